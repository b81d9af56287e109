/**
 * `serve()` for Node's `http` module (and Express, Fastify's raw mode...):
 * `http.createServer((req, res) => handler(req, res))`. Reads the raw body itself because the
 * signature covers the exact bytes; with Express, mount it before any body parser.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServeHandler, type ServeOptions } from "../serve.ts";

export type { ServeOptions } from "../serve.ts";

/** Returns `(req, res) => Promise<void>` for `/api/durable`. */
export function serve(options: ServeOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const handler = createServeHandler(options);
  return async (req, res) => {
    const response = await handler(await toRequest(req));
    res.statusCode = response.status;
    response.headers.forEach((value, name) => res.setHeader(name, value));
    res.end(await response.text());
  };
}

async function toRequest(req: IncomingMessage): Promise<Request> {
  const encrypted = (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true;
  const forwarded = headerValue(req.headers["x-forwarded-proto"])?.split(",")[0]?.trim();
  const protocol = forwarded ?? (encrypted ? "https" : "http");
  const url = new URL(req.url ?? "/", `${protocol}://${headerValue(req.headers.host) ?? "localhost"}`);
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  const method = req.method ?? "GET";
  const body = method === "GET" || method === "HEAD" ? undefined : await readBody(req);
  return new Request(url, { method, headers, body });
}

/** The raw body: from a framework that kept it as a string or Buffer, else from the stream. */
async function readBody(req: IncomingMessage): Promise<string> {
  const preRead = (req as { body?: unknown }).body;
  if (typeof preRead === "string") return preRead;
  if (preRead instanceof Uint8Array) return Buffer.from(preRead).toString("utf8");
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString("utf8");
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
