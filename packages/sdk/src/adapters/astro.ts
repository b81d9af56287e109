/**
 * `serve()` for Astro, in `src/pages/api/durable.ts` (an on-demand endpoint):
 * `export const { GET, POST, PUT } = serve({ client, functions }); export const prerender = false;`
 *
 * An Astro endpoint gets a Web `Request` in its context; on Cloudflare (@astrojs/cloudflare)
 * `locals.runtime.env` holds the bindings, read for `STEPWISE_*` settings. Elsewhere `process.env` is read.
 */
import type { EnvSource } from "../env.ts";
import { createServeHandler, type ServeOptions } from "../serve.ts";

export type { ServeOptions } from "../serve.ts";

/** The part of Astro's `APIContext` that `serve()` reads. */
export interface AstroContext {
  request: Request;
  locals?: { runtime?: { env?: EnvSource } } | object;
}

/** An Astro `APIRoute`. */
export type AstroRoute = (context: AstroContext) => Promise<Response>;

/** Returns `{ GET, POST, PUT }` for the endpoint: GET describes, PUT registers, POST invokes. */
export function serve(options: ServeOptions): { GET: AstroRoute; POST: AstroRoute; PUT: AstroRoute } {
  const handler = createServeHandler(options);
  const route: AstroRoute = ({ request, locals }) => handler(request, (locals as { runtime?: { env?: EnvSource } } | undefined)?.runtime?.env);
  return { GET: route, POST: route, PUT: route };
}
