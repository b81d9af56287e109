/**
 * `serve()` for SvelteKit, in `src/routes/api/durable/+server.ts`:
 * `export const { GET, POST, PUT } = serve({ client, functions })`.
 *
 * A SvelteKit request handler gets a Web `Request` in its event; on Cloudflare (adapter-cloudflare)
 * `platform.env` holds the bindings, read for `STEPWISE_*` settings. Elsewhere `process.env` is read.
 */
import type { EnvSource } from "../env.ts";
import { createServeHandler, type ServeOptions } from "../serve.ts";

export type { ServeOptions } from "../serve.ts";

/** The part of SvelteKit's `RequestEvent` that `serve()` reads. */
export interface SvelteKitEvent {
  request: Request;
  platform?: { env?: EnvSource } | undefined;
}

/** A SvelteKit `RequestHandler`. */
export type SvelteKitHandler = (event: SvelteKitEvent) => Promise<Response>;

/** Returns `{ GET, POST, PUT }` for `+server.ts`: GET describes, PUT registers, POST invokes. */
export function serve(options: ServeOptions): { GET: SvelteKitHandler; POST: SvelteKitHandler; PUT: SvelteKitHandler } {
  const handler = createServeHandler(options);
  const route: SvelteKitHandler = ({ request, platform }) => handler(request, platform?.env);
  return { GET: route, POST: route, PUT: route };
}
