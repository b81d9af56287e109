/**
 * `serve()` for Hono: `app.on(["GET", "POST", "PUT"], "/api/durable", serve({ client, functions }))`.
 * On Workers, `c.env` holds the bindings and is used for `STEPWISE_*` settings.
 *
 * On Node (@hono/node-server) the body is read from Node's request itself when nothing else has
 * started reading it: the Web `Request` that adapter builds around Node's stream cost an
 * invocation about 0.15 ms of CPU. Once a middleware has touched the body (hono/body-limit does
 * on every request with a body, `c.req.raw.signal` does too), that `Request` reads Node's stream
 * itself, and two readers of one stream left invocations over 100 KB unanswered: such a body is
 * read through Hono's request. A body a middleware already read (`c.req.text()`,
 * `c.req.json()`) is taken from Hono's copy.
 */
import type { IncomingMessage } from "node:http";
import type { Context } from "hono";
import { callFromRequest, toResponse, utf8LongerThan, type IncomingCall } from "../call.ts";
import type { EnvSource } from "../env.ts";
import { createCallHandler, type ServeOptions } from "../serve.ts";
import { readCapped } from "./node-call.ts";

export type { ServeOptions } from "../serve.ts";

/** Returns a Hono handler for `/api/durable`. */
export function serve(options: ServeOptions): (c: Context) => Promise<Response> {
  const handler = createCallHandler(options);
  // On Node, c.env holds the raw request objects rather than strings; readEnv ignores non-strings.
  return async (c) => toResponse(await handler(callFromHono(c), (c.env ?? undefined) as EnvSource | undefined));
}

function callFromHono(c: Context): IncomingCall {
  const call = callFromRequest(c.req.raw);
  const incoming = nodeIncoming(c.env);
  return {
    ...call,
    async text(maxBytes) {
      if (incoming && (await unread(incoming))) return readCapped(incoming, maxBytes);
      if (!c.req.raw.bodyUsed) return call.text(maxBytes);
      // Hono keeps what its own readers read; a body read some other way is gone, and this throws saying so.
      const kept = await c.req.text();
      return utf8LongerThan(kept, maxBytes) ? null : kept;
    },
  };
}

/** Node's request under @hono/node-server (its documented `c.env.incoming`); undefined on other runtimes. */
function nodeIncoming(env: unknown): IncomingMessage | undefined {
  const incoming = (env as { incoming?: Partial<IncomingMessage> } | undefined)?.incoming;
  return typeof incoming?.listenerCount === "function" && incoming.readableFlowing !== undefined ? (incoming as IncomingMessage) : undefined;
}

/**
 * Whether nothing has begun reading Node's stream. The `Request` @hono/node-server builds when a
 * middleware touches the body starts reading Node's stream a few microtasks later, so this
 * looks after a turn of the event loop: by then such a reader has subscribed (or paused the
 * stream), and the body is left to it.
 */
async function unread(incoming: IncomingMessage): Promise<boolean> {
  if (typeof setImmediate === "undefined") return false;
  await new Promise((resolve) => setImmediate(resolve));
  return incoming.readableFlowing === null && incoming.listenerCount("data") === 0 && !incoming.readableDidRead && !incoming.readableEnded;
}
