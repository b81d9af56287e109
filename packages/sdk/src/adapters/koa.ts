/**
 * `serve()` for Koa 3: `app.use(serve({ client, functions }))` answers on `/api/durable`
 * (or `path`) and passes every other request on; or on a route of @koa/router:
 * `router.all("/api/durable", serve({ client, functions, path: null }))`.
 *
 * The body is read from Node's stream, or taken where a body parser kept it
 * (`ctx.request.rawBody` from @koa/bodyparser; koa-body with `includeUnparsed: true`); a body
 * parsed without its bytes is answered 500 with advice, since the signature covers the exact
 * bytes. The answer is written to Node's response (`ctx.respond = false`).
 */
import type { ServerResponse } from "node:http";
import type { ServeOptions } from "../serve.ts";
import { nodeHandler } from "./node.ts";
import type { NodeRequest } from "./node-call.ts";

const KOA_RAW_BODY_ADVICE = "Mount serve() before the body parser, or use one that keeps the bytes: @koa/bodyparser, or koa-body with includeUnparsed: true";

/** Options of the Koa middleware. */
export interface KoaServeOptions extends ServeOptions {
  /** The path it answers on (`/api/durable`); `null` on a router's route, which matched already. */
  path?: string | null;
}

export type { ServeOptions } from "../serve.ts";

/** The part of Koa's context that `serve()` reads. */
export interface KoaContextLike {
  req: NodeRequest;
  res: ServerResponse;
  originalUrl?: string;
  path: string;
  /** `body` and `rawBody` where a body parser set them. */
  request: object;
  respond?: boolean;
}

/** Returns a Koa middleware for `/api/durable`. */
export function serve(options: KoaServeOptions): (ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<void> {
  const handler = nodeHandler(options, KOA_RAW_BODY_ADVICE);
  const path = options.path === undefined ? "/api/durable" : options.path;
  return async (ctx, next) => {
    if (path !== null && ctx.path !== path) {
      await next();
      return;
    }
    // What a Koa body parser kept, where the Node adapter looks for it; the URL the client called.
    const req = ctx.req as unknown as { rawBody?: unknown; body?: unknown; originalUrl?: string };
    const parsed = ctx.request as { body?: unknown; rawBody?: unknown };
    if (req.rawBody === undefined && parsed.rawBody !== undefined) req.rawBody = parsed.rawBody;
    if (req.body === undefined && parsed.body !== undefined) req.body = parsed.body;
    if (ctx.originalUrl) req.originalUrl = ctx.originalUrl;
    ctx.respond = false;
    await handler(ctx.req, ctx.res);
  };
}
