/**
 * The Neon driver for Node: {@link createNeonClient} from `./neon.ts`, defaulting to the `ws`
 * package where the runtime has no global WebSocket (Node 20). Kept apart so that the edge
 * entry (`@stepwise/store-postgres/edge`), which Workers bundle, never imports `ws`.
 */
import ws from "ws";
import { createNeonClient as createEdgeNeonClient, type NeonClientOptions } from "./neon.ts";
import type { SqlClient } from "../sql.ts";

/** Creates a pooled SqlClient over the Neon driver; see `./neon.ts`. */
export function createNeonClient(options: NeonClientOptions): SqlClient {
  const webSocketConstructor =
    options.webSocketConstructor ?? (typeof globalThis.WebSocket === "function" ? globalThis.WebSocket : ws);
  return createEdgeNeonClient({ ...options, webSocketConstructor });
}
