/**
 * A Node `IncomingMessage` as a call, and an answer written to a `ServerResponse`, for the Node
 * adapter. The body is read straight from the request's stream, no Web `Request` in between.
 * Node's types only: nothing of Node is imported at run time.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { joinChunks } from "@stepwise/protocol";
import { headerIn, RawBodyMissing, utf8LongerThan, type Answer, type IncomingCall } from "../call.ts";

/** A request, possibly after a body parser: `body` parsed or raw, `rawBody` kept by a `verify` hook. */
export type NodeRequest = IncomingMessage & { body?: unknown; rawBody?: unknown };

/** What an Express or plain Node user can do about {@link RawBodyMissing}. */
export const EXPRESS_RAW_BODY_ADVICE =
  "Mount serve() before express.json(), use express.raw({ type: () => true }) on this route, " +
  "or keep the bytes with express.json({ verify: (req, _res, buf) => { req.rawBody = buf } })";

/**
 * `req` addressed to `url` as a call. Its body is read only when asked for: the bytes a
 * framework kept where it keeps them, else the stream. A POST whose stream something else
 * already read, without keeping the bytes, throws {@link RawBodyMissing} with `advice`.
 */
export function callFromNode(req: NodeRequest, url: string, advice = EXPRESS_RAW_BODY_ADVICE): IncomingCall {
  return {
    method: req.method ?? "GET",
    url,
    header: (name) => headerIn(req.headers, name),
    async text(maxBytes) {
      // Only POST bodies matter (GET describes, PUT registers from config); a parser's `{}` is harmless there.
      const kept = req.method === "POST" ? await keptBody(req, advice) : undefined;
      return kept !== undefined ? (utf8LongerThan(kept, maxBytes) ? null : kept) : readCapped(req, maxBytes);
    },
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

/** Where h3 1 keeps the raw body its readers read (a promise of it): `readRawBody`, `readBody`. */
const H3_RAW_BODY = Symbol.for("h3RawBody");
/** Where koa-body keeps the bytes with `includeUnparsed: true`, on the parsed body. */
const KOA_UNPARSED_BODY = Symbol.for("unparsedBody");

/**
 * The raw body a framework kept (`rawBody`, `body` as string or bytes, h3's and koa-body's own
 * places); undefined when the stream still has it. Throws {@link RawBodyMissing} when the stream
 * was read and nothing kept the bytes: reading it again would wait for ever.
 */
async function keptBody(req: NodeRequest, advice: string): Promise<string | undefined> {
  const h3 = (req as unknown as Record<symbol, unknown>)[H3_RAW_BODY];
  const unparsed = req.body != null && typeof req.body === "object" ? (req.body as Record<symbol, unknown>)[KOA_UNPARSED_BODY] : undefined;
  for (const kept of [req.rawBody, req.body, unparsed, h3 instanceof Promise ? await h3 : h3]) {
    if (typeof kept === "string") return kept;
    if (kept instanceof Uint8Array) return decoder.decode(kept);
  }
  if (req.readableEnded || req.destroyed) throw new RawBodyMissing(advice);
  return undefined;
}

const decoder = new TextDecoder();

/** The body as UTF-8, or null as soon as it passes `maxBytes` (see {@link readBytesCapped}). */
export async function readCapped(req: NodeRequest, maxBytes: number, shared = false): Promise<string | null> {
  const bytes = await readBytesCapped(req, maxBytes, shared);
  return bytes && decoder.decode(bytes);
}

/**
 * The body's bytes off Node's stream, or null as soon as they pass `maxBytes`, declared or sent
 * (the rest is not read). Rejects when the client went away before the end, or already had.
 *
 * `shared`: another reader may subscribe while this one reads (the Web `Request`
 * @hono/node-server builds when a middleware touches the body). It pauses the stream until its
 * own consumer pulls, which may be never, so the stream is resumed after each of its pauses;
 * it is given first what this reader already had (put back at the front of the stream, before
 * anything still buffered), then sees the rest with this one. Whoever comes after the end
 * finds the body in `req.rawBody`, where frameworks on Node keep a body already read
 * (@hono/node-server builds its `Request` from it), set before anyone hears of the end.
 */
export function readBytesCapped(req: NodeRequest, maxBytes: number, shared = false): Promise<Uint8Array | null> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers["content-length"] ?? 0) > maxBytes) return resolve(null);
    if (req.destroyed) return reject(new Error("the request was aborted"));
    const chunks: Uint8Array[] = [];
    let size = 0;
    // The size of the bytes put back for a late reader: the next chunk, which this reader has had.
    let replayed = 0;
    // After the pausing reader's own step: it pauses, then subscribes.
    const keepFlowing = () => queueMicrotask(() => stopped || req.resume());
    // Only the first: a second late reader would have the bytes twice over the first one.
    const lateReader = (event: string | symbol) => {
      if (event !== "data" || replayed !== 0) return;
      if (size === 0) return void (replayed = -1);
      replayed = size;
      // Held until the reader has subscribed (keepFlowing), so that the bytes go to it too.
      req.pause();
      req.unshift(joinChunks(chunks, size));
    };
    let stopped = false;
    const stop = () => {
      stopped = true;
      req.off("pause", keepFlowing);
      req.off("newListener", lateReader);
      req.off("data", onData);
      req.off("end", onEnd);
    };
    const onData = (chunk: Uint8Array) => {
      if (replayed > 0 && chunk.byteLength === replayed) {
        replayed = -1;
        return;
      }
      size += chunk.byteLength;
      if (size > maxBytes) {
        stop();
        req.pause();
        return resolve(null);
      }
      chunks.push(chunk);
    };
    req.on("data", onData);
    // Not after an overflow: whoever drains the rest is not this reader, and kept nothing is whole.
    const onEnd = () => {
      stop();
      const bytes = joinChunks(chunks, size);
      if (shared && req.rawBody === undefined && typeof Buffer !== "undefined") req.rawBody = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      resolve(bytes);
    };
    req.once("end", onEnd);
    const aborted = () => {
      stop();
      reject(new Error("the request was aborted"));
    };
    req.once("error", (error) => (stop(), reject(error)));
    req.once("aborted", aborted);
    req.once("close", () => req.complete || aborted());
    // Last: this reader's own listeners above are no late reader's.
    if (shared) {
      req.on("pause", keepFlowing);
      req.on("newListener", lateReader);
    }
  });
}
