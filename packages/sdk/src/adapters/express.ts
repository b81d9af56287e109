/**
 * `serve()` for Express 4 and 5: `app.all("/api/durable", serve({ client, functions }))`, also
 * under a mounted router (the URL the client called, `originalUrl`, is what is verified).
 *
 * The signature covers the exact body bytes: mount the route before `express.json()`, or keep the
 * bytes with `express.raw({ type: () => true })` on this route or `express.json({ verify: (req,
 * _res, buf) => { req.rawBody = buf } })`. A body parsed without its bytes is answered 500 with
 * that advice, never guessed.
 */
import type { ServerResponse } from "node:http";
import { serve as serveNode } from "./node.ts";
import type { NodeRequest } from "./node-call.ts";

export type { ServeOptions } from "../serve.ts";
import type { ServeOptions } from "../serve.ts";

/** An Express request handler (`req`, `res`, `next`): an error it cannot answer goes to `next`. */
export type ExpressHandler = (req: NodeRequest, res: ServerResponse, next: (error?: unknown) => void) => void;

/** Returns an Express handler for `/api/durable`. */
export function serve(options: ServeOptions): ExpressHandler {
  const handler = serveNode(options);
  return (req, res, next) => {
    handler(req, res).catch(next);
  };
}
