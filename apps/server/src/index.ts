export { startServer, type ServerOptions, type RunningServer } from "./server.ts";
export { createApi, type ApiOptions } from "./api.ts";
export { startDiscovery } from "./discovery.ts";
export { readEnv } from "./env.ts";
