/**
 * What `serve()` reads of a request and what it answers, in the fewest terms every framework
 * can give: an adapter maps its own request to an {@link IncomingCall} and an {@link Answer}
 * back to its own response, nothing else. The Web mappings live here, for the adapters whose
 * framework hands over a `Request` (fetch, Next.js, Hono); the Node adapter reads Node's request
 * directly (`adapters/node-call.ts`) and Lambda its event: a Web `Request` with a body stream
 * costs CPU per invocation for bytes already in hand.
 */
import { readTextCapped } from "@stepwise/protocol";

/** A request to `/api/durable`, as `serve()` reads it. */
export interface IncomingCall {
  /** `GET`, `PUT`, `POST`, … as sent. */
  readonly method: string;
  /** The absolute URL the request was addressed to, query included. */
  readonly url: string;
  /** A header's value (names are case-insensitive), or null when absent. */
  header(name: string): string | null;
  /**
   * The body as UTF-8 text, or null once it is longer than `maxBytes` (refused at once when its
   * `content-length` says so; otherwise no more than that is read). Read at most once.
   */
  text(maxBytes: number): Promise<string | null>;
  /**
   * When the host ends this request (ms since the epoch), for hosts that say (Lambda's
   * `context.getRemainingTimeInMillis()`): checkpointed steps start only in the first half of
   * the time left, so the one running at the budget's end has the other half to finish.
   */
  readonly deadline?: number;
}

/** What `serve()` answers: always a JSON body. */
export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

const encoder = new TextEncoder();

/** Whether `text` takes more than `maxBytes` as UTF-8 (a UTF-16 unit takes one to three bytes). */
export function utf8LongerThan(text: string, maxBytes: number): boolean {
  if (text.length > maxBytes) return true;
  return text.length * 3 > maxBytes && encoder.encode(text).byteLength > maxBytes;
}

/**
 * The body the signature covers was read by something before `serve()` (a body parser, a
 * middleware) and not kept: a setup problem, answered 500 with `advice` for the operator, never
 * guessed at (an empty body would fail as a bad signature and send them after their keys).
 */
export class RawBodyMissing extends Error {
  override name = "RawBodyMissing";
  constructor(advice: string) {
    super(`serve() needs the raw request body to verify the signature, but something before it already read the body. ${advice}`);
  }
}

/** What a Web framework's user can do about {@link RawBodyMissing}. */
export const WEB_RAW_BODY_ADVICE = "Mount serve() before anything that reads the body, or read it there from request.clone()";

/** A header of a Node-style header record (lower-case names, repeated ones as arrays), or null. */
export function headerIn(headers: Record<string, string | string[] | undefined>, name: string): string | null {
  const value = headers[name.toLowerCase()];
  return value === undefined ? null : Array.isArray(value) ? value.join(", ") : value;
}

/**
 * What `X-Forwarded-Proto` says, when it says http or https (behind a proxy that ends TLS), else
 * undefined. The sender's to write: a signature made for another URL fails anyway.
 */
export function forwardedProtocol(value: string | null | undefined): "http" | "https" | undefined {
  const first = value?.split(",")[0]?.trim().toLowerCase();
  return first === "https" || first === "http" ? first : undefined;
}

/** A Web `Request` as a call. */
export function callFromRequest(request: Request, advice = WEB_RAW_BODY_ADVICE): IncomingCall {
  return {
    method: request.method,
    url: request.url,
    header: (name) => request.headers.get(name),
    text: (maxBytes) => {
      if (request.bodyUsed) throw new RawBodyMissing(advice);
      return readTextCapped(request, maxBytes);
    },
  };
}

/** An answer as a Web `Response`. */
export function toResponse(answer: Answer): Response {
  return new Response(answer.body, { status: answer.status, headers: answer.headers });
}
