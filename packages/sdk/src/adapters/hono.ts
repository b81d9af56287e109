/**
 * `serve()` for Hono: `app.on(["GET", "POST", "PUT"], "/api/durable", serve({ client, functions }))`.
 * On Workers, `c.env` holds the bindings and is used for `STEPWISE_*` settings. The body is read
 * through Hono's request, never from Node's underneath it on @hono/node-server: once a middleware
 * has touched `c.req.raw` (hono/body-limit does, on every request with a body) the adapter there
 * reads Node's stream too, and two readers of one stream left invocations over 100 KB unanswered.
 * A body a middleware already read through Hono (`c.req.text()`, `c.req.json()`) is taken from
 * Hono's copy.
 */
import type { Context } from "hono";
import { callFromRequest, toResponse, utf8LongerThan, type IncomingCall } from "../call.ts";
import type { EnvSource } from "../env.ts";
import { createCallHandler, type ServeOptions } from "../serve.ts";

export type { ServeOptions } from "../serve.ts";

/** Returns a Hono handler for `/api/durable`. */
export function serve(options: ServeOptions): (c: Context) => Promise<Response> {
  const handler = createCallHandler(options);
  // On Node, c.env holds the raw request objects rather than strings; readEnv ignores non-strings.
  return async (c) => toResponse(await handler(callFromHono(c), (c.env ?? undefined) as EnvSource | undefined));
}

function callFromHono(c: Context): IncomingCall {
  const call = callFromRequest(c.req.raw);
  return {
    ...call,
    async text(maxBytes) {
      if (!c.req.raw.bodyUsed) return call.text(maxBytes);
      // Hono keeps what its own readers read; a body read some other way is gone, and this throws saying so.
      const kept = await c.req.text();
      return utf8LongerThan(kept, maxBytes) ? null : kept;
    },
  };
}
