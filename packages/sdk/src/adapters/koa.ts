/**
 * `serve()` for Koa 2 and 3: `router.all("/api/durable", serve({ client, functions }))`
 * (@koa/router), or as a middleware that answers on that path.
 *
 * The body is read from Node's stream, or taken from `ctx.request.rawBody` where a body parser
 * kept it (@koa/bodyparser does); a body parsed without its bytes is answered 500 with advice,
 * since the signature covers the exact bytes. The answer is written to Node's response
 * (`ctx.respond = false`).
 */
import type { ServerResponse } from "node:http";
import type { ServeOptions } from "../serve.ts";
import { serve as serveNode } from "./node.ts";
import type { NodeRequest } from "./node-call.ts";

export type { ServeOptions } from "../serve.ts";

/** The part of Koa's context that `serve()` reads. */
export interface KoaContextLike {
  req: NodeRequest;
  res: ServerResponse;
  originalUrl?: string;
  /** `body` and `rawBody` where a body parser set them. */
  request: object;
  respond?: boolean;
}

/** Returns a Koa middleware for `/api/durable`. */
export function serve(options: ServeOptions): (ctx: KoaContextLike, next?: () => Promise<unknown>) => Promise<void> {
  const handler = serveNode(options);
  return async (ctx) => {
    // What a Koa body parser kept, where the Node adapter looks for it; the URL the client called.
    const req = ctx.req as NodeRequest & { rawBody?: unknown; body?: unknown; originalUrl?: string };
    const parsed = ctx.request as { body?: unknown; rawBody?: unknown };
    if (req.rawBody === undefined && parsed.rawBody !== undefined) req.rawBody = parsed.rawBody;
    if (req.body === undefined && parsed.body !== undefined) req.body = parsed.body;
    if (ctx.originalUrl) req.originalUrl = ctx.originalUrl;
    ctx.respond = false;
    await handler(req, ctx.res);
  };
}
