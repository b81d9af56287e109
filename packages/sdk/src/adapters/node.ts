/**
 * `serve()` for Node's `http` module and Express-style `(req, res)` handlers:
 * `http.createServer((req, res) => handler(req, res))` or `app.all("/api/durable", handler)`.
 *
 * The signature covers the exact body bytes, so the raw body is needed. Mount the handler before
 * any body parser, or keep the raw bytes: `express.raw({ type: () => true })` on this route, or
 * `express.json({ verify: (req, _res, buf) => { req.rawBody = buf } })`.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { HEADERS } from "@stepwise/protocol";
import { SDK_VERSION } from "../registry.ts";
import { createServeHandler, type ServeOptions } from "../serve.ts";

export type { ServeOptions } from "../serve.ts";

/** A request, possibly after a body parser: `body` parsed or raw, `rawBody` kept by a `verify` hook. */
export type NodeRequest = IncomingMessage & { body?: unknown; rawBody?: unknown };

/** Returns `(req, res) => Promise<void>` for `/api/durable`. */
export function serve(options: ServeOptions): (req: NodeRequest, res: ServerResponse) => Promise<void> {
  const handler = createServeHandler(options);
  return async (req, res) => {
    let request: Request;
    try {
      request = await toRequest(req);
    } catch (error) {
      // A setup problem (500, for the operator), or a request whose URL cannot be read (400, for its sender).
      const setup = error instanceof RawBodyMissing;
      const message = setup ? error.message : `Bad request: ${error instanceof Error ? error.message : String(error)}`;
      return send(res, new Response(JSON.stringify({ error: message }), { status: setup ? 500 : 400, headers: { "content-type": "application/json", [HEADERS.sdk]: SDK_VERSION } }));
    }
    await send(res, await handler(request));
  };
}

async function send(res: ServerResponse, response: Response): Promise<void> {
  res.statusCode = response.status;
  response.headers.forEach((value, name) => res.setHeader(name, value));
  res.end(await response.text());
}

/** A body parser ate the bytes the signature covers: a setup problem, told to the operator. */
class RawBodyMissing extends Error {
  constructor() {
    super(
      "serve() needs the raw request body to verify the signature, but a body parser already parsed it. " +
        "Mount serve() before express.json(), use express.raw({ type: () => true }) on this route, " +
        "or keep the bytes with express.json({ verify: (req, _res, buf) => { req.rawBody = buf } })",
    );
  }
}

async function toRequest(req: NodeRequest): Promise<Request> {
  const encrypted = (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true;
  // X-Forwarded-Proto is the sender's to write: it may say https, else it is ignored.
  const forwarded = headerValue(req.headers["x-forwarded-proto"])?.split(",")[0]?.trim().toLowerCase();
  const protocol = forwarded === "https" || forwarded === "http" ? forwarded : encrypted ? "https" : "http";
  // Express rewrites req.url under a mounted router; originalUrl is what the client called.
  const path = (req as { originalUrl?: string }).originalUrl ?? req.url ?? "/";
  const url = new URL(path, `${protocol}://${headerValue(req.headers.host) ?? "localhost"}`);
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  const method = req.method ?? "GET";
  // Only POST bodies matter (GET describes, PUT registers from config); a parser's `{}` is harmless there.
  if (method !== "POST") return new Request(url, { method, headers });
  const body = keptBody(req);
  if (body !== undefined) return new Request(url, { method, headers, body });
  // The stream itself, unread: serve() checks the signature header and the size before reading it.
  const stream = Readable.toWeb(req) as ReadableStream<Uint8Array>;
  return new Request(url, { method, headers, body: stream, duplex: "half" } as RequestInit);
}

/** The raw body a framework kept (`rawBody`, or `body` as string or Buffer); undefined when the stream still has it. */
function keptBody(req: NodeRequest): string | undefined {
  for (const kept of [req.rawBody, req.body]) {
    if (typeof kept === "string") return kept;
    if (kept instanceof Uint8Array) return new TextDecoder().decode(kept);
  }
  // A parsed object whose stream was consumed cannot give back the signed bytes.
  if (req.body != null && req.readableEnded) throw new RawBodyMissing();
  return undefined;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
