/**
 * `serve()` for Hono: `app.on(["GET", "POST", "PUT"], "/api/durable", serve({ client, functions }))`.
 * On Workers, `c.env` holds the bindings and is used for `STEPWISE_*` settings.
 *
 * On Node (@hono/node-server) the body is read off Node's request itself when nothing has begun
 * reading it: the Web `Request` that adapter builds around Node's stream, once anything touches
 * the body, cost the app a fifth to a quarter of its CPU per invocation (docs/performance.md).
 * That `Request` reads Node's stream too, and two readers of one stream once left invocations
 * over 100 KB unanswered, so:
 * - a body something began to read before the handler (hono/body-limit touches it on every
 *   request with a body; `c.req.raw.signal` does too) is left to it and read through Hono's
 *   request; a body a middleware already read (`c.req.text()`, `c.req.json()`) comes from Hono's copy;
 * - the first reader that listens for `data` while the handler reads (that `Request`, built
 *   when a middleware touches `c.req.raw` then) is given what was read so far, then the rest,
 *   and kept from pausing the stream for good (see `readBytesCapped`);
 * - a reader that starts after the end gets the bytes kept in `incoming.rawBody`, which
 *   @hono/node-server builds its `Request` from.
 * Not covered, each only what is left of the stream: a second reader mid-body, one that reads
 * through `readable` (async iteration of Node's stream) mid-body, and one that starts after the
 * handler refused the body as too large (413).
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
      if (incoming && (await unread(incoming))) return readCapped(incoming, maxBytes, true);
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
 * Whether nothing has begun reading Node's stream, nor ended it. The `Request` @hono/node-server
 * builds when a middleware touches the body starts reading Node's stream a few microtasks later,
 * so this looks after a turn of the event loop: by then such a reader has subscribed (or paused
 * the stream). A client gone already is left to Hono's request, which says so.
 */
async function unread(incoming: IncomingMessage): Promise<boolean> {
  if (typeof setImmediate === "undefined") return false;
  await new Promise((resolve) => setImmediate(resolve));
  return incoming.readableFlowing === null && incoming.listenerCount("data") === 0 && !incoming.readableDidRead && !incoming.readableEnded && !incoming.destroyed;
}
