/**
 * `serve()` for Hono: `app.on(["GET", "POST", "PUT"], "/api/durable", serve({ client, functions }))`.
 * On Workers, `c.env` holds the bindings and is used for `STEPWISE_*` settings.
 */
import type { Context } from "hono";
import type { EnvSource } from "../env.ts";
import { createServeHandler, type ServeOptions } from "../serve.ts";

export type { ServeOptions } from "../serve.ts";

/** Returns a Hono handler for `/api/durable`. */
export function serve(options: ServeOptions): (c: Context) => Promise<Response> {
  const handler = createServeHandler(options);
  // On Node, c.env holds the raw request objects rather than strings; readEnv ignores non-strings.
  return (c) => handler(c.req.raw, (c.env ?? undefined) as EnvSource | undefined);
}
