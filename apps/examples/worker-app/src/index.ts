/**
 * The example shop as a Cloudflare Worker: the shop's functions on /api/durable through
 * `@stepwise/sdk/fetch`. Configured by `wrangler.toml` next to this folder.
 */
import { functions, stepwise } from "@stepwise/example-shop";
import { serve } from "@stepwise/sdk/fetch";

/** The Worker's bindings that Stepwise reads (vars in wrangler.toml, secrets via `wrangler secret put`). */
export interface Env {
  STEPWISE_DEV?: string;
  STEPWISE_SIGNING_KEY?: string;
  STEPWISE_SIGNING_KEY_NEXT?: string;
  STEPWISE_BASE_URL?: string;
  STEPWISE_SERVE_URL?: string;
}

// Built once per isolate; settings are read from `env` on every request, never at module load
// (a Worker's env only exists inside a request).
const handler = serve({ client: stepwise, functions });

/** The Worker: `/api/durable` for the executor, a one-line hint on `/`. */
export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const { pathname } = new URL(request.url);
    if (pathname === "/api/durable") return handler(request, env);
    if (pathname === "/") return new Response("Stepwise example shop (Worker): functions are served on /api/durable\n");
    return new Response("Not found\n", { status: 404 });
  },
};
