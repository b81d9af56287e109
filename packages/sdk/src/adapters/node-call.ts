/**
 * A Node `IncomingMessage` as a call, and an answer written to a `ServerResponse`, for the Node
 * adapter. The body is read straight from the request's stream, no Web `Request` in between.
 * Node's types only: nothing of Node is imported at run time.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { joinChunks } from "@stepwise/protocol";
import { utf8LongerThan, type Answer, type IncomingCall } from "../call.ts";

/** A request, possibly after a body parser: `body` parsed or raw, `rawBody` kept by a `verify` hook. */
export type NodeRequest = IncomingMessage & { body?: unknown; rawBody?: unknown };

/** A body parser ate the bytes the signature covers: a setup problem, told to the operator. */
export class RawBodyMissing extends Error {
  constructor() {
    super(
      "serve() needs the raw request body to verify the signature, but a body parser already parsed it. " +
        "Mount serve() before express.json(), use express.raw({ type: () => true }) on this route, " +
        "or keep the bytes with express.json({ verify: (req, _res, buf) => { req.rawBody = buf } })",
    );
  }
}

/**
 * `req` addressed to `url` as a call. Its body is read only when asked for; a POST whose body
 * a parser consumed without keeping the bytes throws {@link RawBodyMissing} here, at once.
 */
export function callFromNode(req: NodeRequest, url: string): IncomingCall {
  // Only POST bodies matter (GET describes, PUT registers from config); a parser's `{}` is harmless there.
  const kept = req.method === "POST" ? keptBody(req) : undefined;
  return {
    method: req.method ?? "GET",
    url,
    header: (name) => {
      const value = req.headers[name.toLowerCase()];
      return value === undefined ? null : Array.isArray(value) ? value.join(", ") : value;
    },
    text: (maxBytes) => (kept !== undefined ? Promise.resolve(utf8LongerThan(kept, maxBytes) ? null : kept) : readCapped(req, maxBytes)),
  };
}

/**
 * Writes `answer`. A body left unread (refused before reading it, or too large) would be taken
 * for the next request on the connection, so such a connection is closed after the answer.
 */
export function writeAnswer(res: ServerResponse, req: IncomingMessage, answer: Answer): void {
  const unread = !req.complete;
  // HTTP/2 has no connection header (Node warns and drops it): destroying the stream is enough there.
  const close = unread && req.httpVersionMajor === 1;
  res.writeHead(answer.status, close ? { ...answer.headers, connection: "close" } : answer.headers);
  res.end(answer.body, () => {
    if (unread) req.destroy();
  });
}

/** The raw body a framework kept (`rawBody`, or `body` as string or bytes); undefined when the stream still has it. */
function keptBody(req: NodeRequest): string | undefined {
  for (const kept of [req.rawBody, req.body]) {
    if (typeof kept === "string") return kept;
    if (kept instanceof Uint8Array) return decoder.decode(kept);
  }
  // A parsed object whose stream was consumed cannot give back the signed bytes.
  if (req.body != null && req.readableEnded) throw new RawBodyMissing();
  return undefined;
}

const decoder = new TextDecoder();

/** The body as UTF-8, or null as soon as it passes `maxBytes`, declared or sent; the rest is not read. */
function readCapped(req: IncomingMessage, maxBytes: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers["content-length"] ?? 0) > maxBytes) return resolve(null);
    const chunks: Uint8Array[] = [];
    let size = 0;
    const onData = (chunk: Uint8Array) => {
      size += chunk.byteLength;
      if (size > maxBytes) {
        req.pause();
        req.off("data", onData);
        return resolve(null);
      }
      chunks.push(chunk);
    };
    req.on("data", onData);
    req.once("end", () => resolve(decoder.decode(joinChunks(chunks, size))));
    req.once("error", reject);
    req.once("aborted", () => reject(new Error("the request was aborted")));
  });
}
