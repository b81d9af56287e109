/**
 * `serve()` for Node's `http` module and Express-style `(req, res)` handlers:
 * `http.createServer((req, res) => handler(req, res))` or `app.all("/api/durable", handler)`.
 *
 * The signature covers the exact body bytes, so the raw body is needed. Mount the handler before
 * any body parser, or keep the raw bytes: `express.raw({ type: () => true })` on this route, or
 * `express.json({ verify: (req, _res, buf) => { req.rawBody = buf } })`.
 */
import type { ServerResponse } from "node:http";
import { HEADERS } from "@stepwise/protocol";
import { SDK_VERSION } from "../registry.ts";
import { forwardedProtocol } from "../call.ts";
import { createCallHandler, type ServeOptions } from "../serve.ts";
import { callFromNode, EXPRESS_RAW_BODY_ADVICE, writeAnswer, type NodeRequest } from "./node-call.ts";

export type { ServeOptions } from "../serve.ts";
export type { NodeRequest } from "./node-call.ts";

/** Returns `(req, res) => Promise<void>` for `/api/durable`. */
export function serve(options: ServeOptions): (req: NodeRequest, res: ServerResponse) => Promise<void> {
  return nodeHandler(options, EXPRESS_RAW_BODY_ADVICE);
}

/**
 * The Node handler behind this adapter and the frameworks on Node's request (Koa, h3 1), with
 * what to tell their users when something before `serve()` read the body.
 */
export function nodeHandler(options: ServeOptions, rawBodyAdvice: string): (req: NodeRequest, res: ServerResponse) => Promise<void> {
  const handler = createCallHandler(options);
  return async (req, res) => {
    let call;
    try {
      call = callFromNode(req, requestUrl(req), rawBodyAdvice);
    } catch (error) {
      // A request whose URL cannot be read: 400, for its sender.
      const headers = { "content-type": "application/json", [HEADERS.sdk]: SDK_VERSION };
      return writeAnswer(res, req, { status: 400, headers, body: JSON.stringify({ error: `Bad request: ${error instanceof Error ? error.message : String(error)}` }) });
    }
    writeAnswer(res, req, await handler(call));
  };
}

/** The URL the client called; throws when the Host header makes none. */
function requestUrl(req: NodeRequest): string {
  const encrypted = (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true;
  const protocol = forwardedProtocol(headerValue(req.headers["x-forwarded-proto"])) ?? (encrypted ? "https" : "http");
  // Express rewrites req.url under a mounted router; originalUrl is what the client called.
  const path = (req as { originalUrl?: string }).originalUrl ?? req.url ?? "/";
  return new URL(path, `${protocol}://${headerValue(req.headers.host) ?? "localhost"}`).href;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
