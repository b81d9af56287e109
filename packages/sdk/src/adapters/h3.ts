/**
 * `serve()` for h3: Nuxt and Nitro server routes (`server/api/durable.ts`:
 * `export default defineEventHandler(serve({ client, functions }))`) or an h3 app
 * (`app.all("/api/durable", serve({ client, functions }))`).
 *
 * h3 2 hands over a Web `Request` (`event.req`); h3 1 (Nuxt 3 and 4, Nitro 2) gives Node's
 * request and response (`event.node`), read and written as the Node adapter does, so the body is
 * read once from the stream (or taken from `req.body` where Nitro's runtime keeps it). On
 * Cloudflare the bindings (`event.context.cloudflare.env`) are read for `STEPWISE_*` settings.
 */
import type { ServerResponse } from "node:http";
import type { EnvSource } from "../env.ts";
import { callFromRequest, toResponse } from "../call.ts";
import { createCallHandler, type ServeOptions } from "../serve.ts";
import { nodeHandler } from "./node.ts";
import type { NodeRequest } from "./node-call.ts";

export type { ServeOptions } from "../serve.ts";

const H3_RAW_BODY_ADVICE = "Mount serve() before handlers that read the body, or read it there with readRawBody (h3 1 keeps what it read)";

/** The part of an h3 event (version 1 or 2) that `serve()` reads. */
export interface H3EventLike {
  /** h3 2: the Web request. */
  req?: unknown;
  /** h3 1: Node's request and response. */
  node?: { req: unknown; res?: unknown };
  /** h3 1.8 and later, on runtimes with Web requests. */
  web?: { request?: Request } | undefined;
  /** On Cloudflare, `cloudflare.env` holds the bindings. */
  context?: unknown;
}

/** Returns an h3 event handler for `/api/durable`. */
export function serve(options: ServeOptions): (event: H3EventLike) => Promise<Response | undefined> {
  const endpoint = createCallHandler(options);
  const node = nodeHandler(options, H3_RAW_BODY_ADVICE);
  return async (event) => {
    const env = (event.context as { cloudflare?: { env?: EnvSource } } | undefined)?.cloudflare?.env;
    const request = isRequest(event.req) ? event.req : event.web?.request;
    if (request) return toResponse(await endpoint(callFromRequest(request, H3_RAW_BODY_ADVICE), env));
    if (!event.node?.res) throw new TypeError("serve(): this h3 event has neither a Web request (h3 2) nor Node's request (h3 1)");
    // h3 1 sees the response ended and sends nothing more.
    await node(event.node.req as NodeRequest, event.node.res as ServerResponse);
    return undefined;
  };
}

/** srvx's request on Node (h3 2) is a Web request without being an instance of the global class. */
function isRequest(value: unknown): value is Request {
  if (value instanceof Request) return true;
  const candidate = value as Partial<Request> | undefined;
  return typeof candidate?.url === "string" && typeof candidate.headers?.get === "function" && typeof candidate.text === "function";
}
