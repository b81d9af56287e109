/** Local bridges so the Neon driver (and friends) reach plain local services in dev, tests and CI. */
export {
  startWsTcpBridge,
  parseTarget,
  DEFAULT_ALLOWED_TARGETS,
  type WsTcpBridge,
  type WsTcpBridgeOptions,
} from "./ws-tcp-bridge.ts";
export { startUpstashBridge, createUpstashApp, type UpstashBridge, type UpstashBridgeOptions } from "./upstash-bridge.ts";
export { startNeonHttpBridge, type NeonHttpBridge, type NeonHttpBridgeOptions } from "./neon-http-bridge.ts";
