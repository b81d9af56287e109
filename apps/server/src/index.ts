export { startServer, type ServerOptions, type RunningServer } from "./server.ts";
// The API moved to @stepwise/api (shared with the Worker); re-exported so existing imports keep working.
export { createApi, type ApiOptions } from "@stepwise/api";
export { startDiscovery } from "./discovery.ts";
export { readEnv } from "./env.ts";
