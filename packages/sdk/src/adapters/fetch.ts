/**
 * `serve()` for any fetch-style runtime: Cloudflare Workers, Deno, Bun, Next.js route
 * handlers. On Workers, pass the `env` bindings so `STEPWISE_*` settings come from them:
 * `export default { fetch: (request, env) => handler(request, env) }`.
 */
import type { EnvSource } from "../env.ts";
import { createServeHandler, type ServeOptions } from "../serve.ts";

export type { ServeOptions } from "../serve.ts";

/** Returns `(request, env?) => Response` for `/api/durable`. */
export function serve(options: ServeOptions): (request: Request, env?: EnvSource) => Promise<Response> {
  return createServeHandler(options);
}
