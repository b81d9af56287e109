/**
 * `serve()` for Next.js App Router route handlers, in `app/api/durable/route.ts`:
 * `export const { GET, POST, PUT } = serve({ client, functions })`.
 *
 * Route handlers already receive a Web `Request`, so this only names the three methods. Works on
 * the Node and the Edge runtime; settings come from `process.env`, read per request. On
 * Next.js 14 add `export const dynamic = "force-dynamic"` so the GET is never cached at build.
 */
import { createServeHandler, type ServeOptions } from "../serve.ts";

export type { ServeOptions } from "../serve.ts";

/** A Next.js route handler; the second argument (route params) is not needed. */
export type RouteHandler = (request: Request) => Promise<Response>;

/** The route handlers of `/api/durable`: GET describes, PUT registers, POST invokes. */
export interface NextRouteHandlers {
  GET: RouteHandler;
  POST: RouteHandler;
  PUT: RouteHandler;
}

/** Returns `{ GET, POST, PUT }` for `app/api/durable/route.ts`. */
export function serve(options: ServeOptions): NextRouteHandlers {
  const handler = createServeHandler(options);
  // One function for all three: the core dispatches on request.method. Wrapped so that Next's
  // second argument ({ params }) is never mistaken for a Worker env.
  const route: RouteHandler = (request) => handler(request);
  return { GET: route, POST: route, PUT: route };
}
