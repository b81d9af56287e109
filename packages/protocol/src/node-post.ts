/**
 * A POST over `node:http`/`node:https` with keep-alive connections, where the runtime hands
 * those modules out without an import (`process.getBuiltinModule`: Node 20.16+, Bun). Both
 * sides of the wire send one request per step (the executor's invocation, the app's
 * checkpoint), and undici's fetch costs five to seven times the CPU of a plain `http.request`
 * for the same round trip on the same machine (measured: 0.53 vs 0.08 ms). Elsewhere (Workers,
 * Deno, edge runtimes) `nodePost` is undefined, and callers use fetch.
 *
 * Like a fetch with `redirect: "manual"`, it never follows a redirect: a 3xx comes back as it is.
 *
 * A kept-alive connection can be closed by the other side just as a request goes out on it
 * (servers close idle connections after a few seconds: Node's after 5). Idle connections are
 * dropped here after {@link IDLE_MS}, before most servers would, and a request that finds its
 * reused connection reset before any answer goes once more on a new one. The other side most
 * likely closed that connection without reading it; if it did read it (and then died), the
 * second copy changes nothing: an invocation is refused as a replay of its signature, and a
 * checkpoint finds its step stored.
 */
import { joinChunks } from "./body.ts";

export interface PostOptions {
  headers: Record<string, string>;
  /** The whole exchange, connection to last byte, must end within this. */
  timeoutMs: number;
  /** Longest answer read; a longer one is dropped unread (`text: null`). */
  maxBytes: number;
}

export interface PostAnswer {
  status: number;
  /** The `location` header of a redirect, if any. */
  location: string | null;
  /** The answer decoded as UTF-8, or null when it passed `maxBytes`. */
  text: string | null;
}

/**
 * Why a POST failed: `request` before any answer came (refused, reset, no answer in time),
 * `answer` while the answer was on its way (cut off, or the time ran out mid-answer).
 */
export class PostError extends Error {
  override readonly name = "PostError";
  constructor(
    readonly stage: "request" | "answer",
    message: string,
    /** The system's error code where there is one (`ECONNREFUSED`, `ENOTFOUND`…). */
    readonly code?: string,
  ) {
    super(message);
  }
}

export type NodePost = (url: string, body: string, options: PostOptions) => Promise<PostAnswer>;

/** Why a call failed, in words: fetch says only "fetch failed", its cause (refused, reset, a redirect not followed) says what happened. */
export function failureReason(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause as { message?: unknown; code?: unknown } | undefined;
  const detail = cause && (typeof cause.message === "string" && cause.message ? cause.message : typeof cause.code === "string" ? cause.code : "");
  return detail ? `${error.message} (${detail})` : error.message;
}

/** How long an idle kept-alive connection is kept: under the 5 s after which Node's server closes one. */
const IDLE_MS = 4_000;

interface HttpModule {
  Agent: new (options: { keepAlive: boolean; timeout: number }) => unknown;
  request(options: Record<string, unknown>, onResponse: (response: IncomingLike) => void): RequestLike;
}

/** Where a URL points, as `http.request` takes it (parsed once: a URL string is parsed twice per request there). */
interface Target {
  protocol: string;
  hostname: string;
  port: string;
  path: string;
  /** `user:password` from the URL, for Basic authentication. */
  auth?: string;
}

/** Targets by URL: both sides post to a handful of URLs, over and over. */
const targets = new Map<string, Target>();
const MAX_TARGETS = 256;

function targetOf(url: string): Target {
  let target = targets.get(url);
  if (!target) {
    const parsed = new URL(url);
    // A bracketed IPv6 host is given to Node without its brackets.
    target = { protocol: parsed.protocol, hostname: parsed.hostname.replace(/^\[(.*)\]$/, "$1"), port: parsed.port, path: `${parsed.pathname}${parsed.search}` };
    if (parsed.username || parsed.password) target.auth = `${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`;
    if (targets.size >= MAX_TARGETS) targets.clear();
    targets.set(url, target);
  }
  return target;
}
interface IncomingLike {
  statusCode?: number;
  headers: Record<string, string | string[] | undefined>;
  on(event: "data", listener: (chunk: Uint8Array) => void): void;
  on(event: "end" | "aborted" | "close", listener: () => void): void;
  on(event: "error", listener: (error: Error) => void): void;
  destroy(): void;
}
interface RequestLike {
  /** Whether the request went out on a connection an earlier request used. */
  reusedSocket?: boolean;
  on(event: "error", listener: (error: Error & { code?: string }) => void): void;
  destroy(error?: Error): void;
  end(body: Uint8Array): void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const nodePost: NodePost | undefined = (() => {
  const runtime = globalThis as { process?: { getBuiltinModule?: (id: string) => unknown }; navigator?: { userAgent?: string } };
  // workerd offers a node:http of its own over fetch; fetch is the direct way there.
  if (runtime.navigator?.userAgent === "Cloudflare-Workers") return undefined;
  let http: HttpModule | undefined;
  let https: HttpModule | undefined;
  try {
    http = runtime.process?.getBuiltinModule?.("node:http") as HttpModule | undefined;
    https = runtime.process?.getBuiltinModule?.("node:https") as HttpModule | undefined;
  } catch {
    return undefined;
  }
  if (!http?.request || !https?.request) return undefined;
  // Idle keep-alive sockets are unref'd by Node's agent: they never hold a process open.
  const agents = {
    "http:": new http.Agent({ keepAlive: true, timeout: IDLE_MS }),
    "https:": new https.Agent({ keepAlive: true, timeout: IDLE_MS }),
  };
  const post = (url: string, body: string, { headers, timeoutMs, maxBytes }: PostOptions, mayRetry: boolean) =>
    new Promise<PostAnswer>((resolve, reject) => {
      const startedAt = performance.now();
      const { protocol, hostname, port, path, auth } = targetOf(url);
      if (protocol !== "http:" && protocol !== "https:") return reject(new PostError("request", `cannot POST to a ${protocol} URL`));
      const bytes = encoder.encode(body);
      let answering = false;
      let settled = false;
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        outcome();
      };
      const fail = (error: Error) =>
        settle(() => reject(error instanceof PostError ? error : new PostError(answering ? "answer" : "request", error.message, (error as { code?: string }).code)));
      const request = (protocol === "https:" ? https! : http!).request(
        { protocol, hostname, port, path, auth, method: "POST", agent: agents[protocol], headers: { ...headers, "content-length": String(bytes.byteLength) } },
        (response) => {
          answering = true;
          const status = response.statusCode ?? 0;
          const location = typeof response.headers.location === "string" ? response.headers.location : null;
          const chunks: Uint8Array[] = [];
          let size = Number(response.headers["content-length"] ?? 0);
          if (size > maxBytes) {
            settle(() => resolve({ status, location, text: null }));
            return response.destroy();
          }
          size = 0;
          response.on("data", (chunk) => {
            size += chunk.byteLength;
            if (size > maxBytes) {
              settle(() => resolve({ status, location, text: null }));
              return response.destroy();
            }
            chunks.push(chunk);
          });
          response.on("end", () => settle(() => resolve({ status, location, text: decoder.decode(joinChunks(chunks, size)) })));
          // "close" follows every "end": build the error only when nothing settled (an Error captures a stack, measurable per request).
          const cutOff = () => settled || fail(new PostError("answer", "the answer was cut off"));
          response.on("aborted", cutOff);
          response.on("error", fail);
          response.on("close", cutOff);
        },
      );
      const timer = setTimeout(() => request.destroy(new PostError(answering ? "answer" : "request", `no answer within ${timeoutMs} ms`)), timeoutMs);
      request.on("error", (error) => {
        const closedUnderUs = mayRetry && request.reusedSocket && !answering && (error.code === "ECONNRESET" || error.code === "EPIPE");
        if (closedUnderUs && !settled) {
          settled = true;
          clearTimeout(timer);
          // In what is left of the time: the whole exchange, retry included, ends within timeoutMs.
          const left = Math.max(1, timeoutMs - (performance.now() - startedAt));
          return void post(url, body, { headers, timeoutMs: left, maxBytes }, false).then(resolve, reject);
        }
        fail(error);
      });
      request.end(bytes);
    });
  return (url, body, options) => post(url, body, options, true);
})();
