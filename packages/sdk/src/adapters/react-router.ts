/**
 * `serve()` for React Router 7 (framework mode) and Remix, as a resource route, e.g.
 * `app/routes/api.durable.ts`: `export const { loader, action } = serve({ client, functions })`.
 *
 * The loader answers GET (describes the app), the action PUT (registers) and POST (invokes). On
 * Cloudflare `context.cloudflare.env` holds the bindings, read for `STEPWISE_*` settings.
 * Elsewhere `process.env` is read.
 */
import type { EnvSource } from "../env.ts";
import { createServeHandler, type ServeOptions } from "../serve.ts";

export type { ServeOptions } from "../serve.ts";

/** The part of a loader's or an action's arguments that `serve()` reads. */
export interface RouteArgs {
  request: Request;
  context?: { cloudflare?: { env?: EnvSource } } | object;
}

/** A resource route's `loader` or `action`. */
export type RouteFunction = (args: RouteArgs) => Promise<Response>;

/** Returns `{ loader, action }` for the resource route. */
export function serve(options: ServeOptions): { loader: RouteFunction; action: RouteFunction } {
  const handler = createServeHandler(options);
  const route: RouteFunction = ({ request, context }) => handler(request, (context as { cloudflare?: { env?: EnvSource } } | undefined)?.cloudflare?.env);
  return { loader: route, action: route };
}
