/**
 * `step.fetch`: the executor, not the app, makes the request, so no app invocation stays open
 * (and billed) while a model or an API takes its time. The app's answer carries the request; it
 * is kept with its step, sealed, until the executor has made it; then the response replaces it.
 *
 * - **At rest** the request (URL, headers, body: an API key in a header) is sealed with AES-GCM
 *   under a key derived from the app's signing key, so the store holds no secret in the clear,
 *   and it is gone once the step has its response or fails for good. It is never sent back to
 *   the app, nor shown by the run API (a planned fetch step's output is its sealed request).
 * - **In logs** only the method, origin and path appear: a query string may carry a key too.
 * - **Where**: http(s) only, and never a link-local or cloud metadata address (the executor's
 *   own credentials live there); private hosts are allowed (an internal model gateway).
 *   Redirects are not followed (one could lead past that check): the function gets the 3xx.
 *   No credentials in the URL, and the stored answer's `url` has no query string.
 * - **Failures**: a network error, a timeout, a 429 or a 5xx is a failed attempt, retried per
 *   the step's retry policy; a `Retry-After` sets the retry's time exactly. Any other status is
 *   a response, handed to the function as `fetch` would.
 */
import { appUrlProblem } from "./app-urls.ts";
import { DEFAULT_FETCH_TIMEOUT_MS, FetchRequestSchema, readBytesCapped, type FetchRequest, type FetchResponse, type SerializedError } from "@stepwise/protocol";
import { serializedError } from "./errors.ts";
import { formatBytes } from "./limits.ts";
import { formatDuration } from "./log.ts";

/** What one attempt came to: a response to store, or a failure to retry or fail the step with. */
export type FetchOutcome = { ok: true; response: FetchResponse } | { ok: false; error: SerializedError; retriable: boolean; retryAt?: string };

/** Why the executor will not make a request to `url`, or null. */
export function fetchUrlProblem(url: string): string | null {
  // Private hosts allowed; link-local and metadata never (the same rules as app URLs otherwise).
  const problem = appUrlProblem(url, { allowPrivate: true }, "the URL");
  if (problem) return problem;
  // Credentials in the URL would be quoted by the errors of the request: pass them as a header.
  const { username, password } = new URL(url);
  return username || password ? "the URL carries a user name or password; send credentials in a header (authorization)" : null;
}

/** The longest a `Retry-After` may park a step: past it, the step's own backoff applies. */
const MAX_RETRY_AFTER_MS = 24 * 3_600_000;

/** Where a request goes, for log lines: no query string, no fragment. */
export function fetchTarget(request: Pick<FetchRequest, "url" | "method">): string {
  const url = new URL(request.url);
  return `${(request.method ?? "GET").toUpperCase()} ${url.origin}${url.pathname}`;
}

const SEAL_VERSION = "v1";
const encoder = new TextEncoder();

async function sealKey(secret: string): Promise<CryptoKey> {
  const material = await crypto.subtle.digest("SHA-256", encoder.encode(`stepwise-fetch-request\n${secret}`));
  return crypto.subtle.importKey("raw", material, "AES-GCM", false, ["encrypt", "decrypt"]);
}

/** The request, sealed under `secret` (the run's app's signing key). */
export async function sealRequest(secret: string, request: FetchRequest): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, await sealKey(secret), encoder.encode(JSON.stringify(request)));
  return `${SEAL_VERSION}.${toBase64(iv)}.${toBase64(new Uint8Array(sealed))}`;
}

/**
 * The request a {@link sealRequest} sealed under one of `secrets` (the app's keys: during a
 * rotation the executor that sealed it may have signed with the next key already, or this one
 * may have moved on to it); throws when none of them sealed it or the text was changed.
 */
export async function openRequest(secrets: readonly string[], sealed: string): Promise<FetchRequest> {
  const [version, iv, data] = sealed.split(".");
  if (version !== SEAL_VERSION || !iv || !data) throw new Error("the stored request is not one this executor sealed");
  for (const secret of secrets) {
    let plain: ArrayBuffer;
    try {
      plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: fromBase64(iv) }, await sealKey(secret), fromBase64(data));
    } catch {
      continue;
    }
    return FetchRequestSchema.parse(JSON.parse(new TextDecoder().decode(plain)));
  }
  throw new Error(
    "the stored request does not open with this executor's signing keys (it was sealed under a key the executor no longer has, or changed): during a rotation, keep the old key as STEPWISE_SIGNING_KEY_NEXT until the requests sealed under it are made",
  );
}

/** Makes one attempt of `request`; a response over `maxBytes` fails the step for good. */
export async function performFetch(request: FetchRequest, options: { maxBytes: number; fetch?: typeof fetch; now?: number; signal?: AbortSignal }): Promise<FetchOutcome> {
  const target = fetchTarget(request);
  const timeoutMs = request.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  const timeout = AbortSignal.timeout(timeoutMs);
  // Stopped from outside (the run ended, so nothing will be stored). Retriable all the same: were
  // a live run's request ever stopped, its step would be tried again rather than failed for good.
  const stopped = (): FetchOutcome => ({ ok: false, error: serializedError("FetchFailed", `step.fetch ${target}: stopped, its run ended`), retriable: true });
  let response: Response;
  try {
    response = await (options.fetch ?? fetch)(request.url, {
      method: request.method ?? "GET",
      headers: request.headers,
      body: request.body,
      signal: options.signal ? AbortSignal.any([timeout, options.signal]) : timeout,
      // Not followed: a redirect could lead where the executor never goes (a metadata address),
      // past the check of the URL the app gave. The function gets the 3xx and decides.
      redirect: "manual",
    });
  } catch (error) {
    if (options.signal?.aborted) return stopped();
    const timedOut = (error as Error)?.name === "TimeoutError";
    // Not the error's own text: fetch quotes the URL in some, and a key may be in it.
    const why = timedOut ? `no answer within ${formatDuration(timeoutMs)}` : errorCodeOf(error);
    return { ok: false, error: serializedError("FetchFailed", `step.fetch ${target}: ${why}`), retriable: true };
  }
  if (response.status === 429 || response.status >= 500) {
    await response.body?.cancel().catch(() => {});
    const retryAt = retryAfter(response.headers.get("retry-after"), options.now ?? Date.now());
    return {
      ok: false,
      error: serializedError("FetchFailed", `step.fetch ${target} answered ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`),
      retriable: true,
      ...(retryAt && { retryAt: retryAt.toISOString() }),
    };
  }
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (declared > options.maxBytes) {
    await response.body?.cancel().catch(() => {});
    return { ok: false, error: serializedError("FetchResponseTooLarge", `step.fetch ${target} answered ${formatBytes(declared)}, more than ${formatBytes(options.maxBytes)}, the most a step stores`), retriable: false };
  }
  let bytes: Uint8Array | null;
  try {
    // Read only up to what a step stores: an answer past it (or one that never ends) is not held in memory.
    bytes = await readBytesCapped(response, options.maxBytes);
  } catch (error) {
    if (options.signal?.aborted) return stopped();
    // The answer was cut off or stalled while it was read: as transient as a failed connection.
    return { ok: false, error: serializedError("FetchFailed", `step.fetch ${target}: the answer's body could not be read (${(error as Error)?.name === "TimeoutError" ? "timed out" : "cut off"})`), retriable: true };
  }
  if (bytes === null) {
    return { ok: false, error: serializedError("FetchResponseTooLarge", `step.fetch ${target} answered more than ${formatBytes(options.maxBytes)}, the most a step stores`), retriable: false };
  }
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => (headers[name] = value));
  // (A `fetch` given to the executor may answer with headers that lack it.)
  const setCookie = response.headers.getSetCookie?.() ?? [];
  const text = decodeText(bytes);
  return {
    ok: true,
    response: {
      status: response.status,
      statusText: response.statusText,
      headers,
      // The URL without its query: a key may be in it, and the step's output is stored in the clear.
      url: withoutQuery(request.url),
      ...(text === undefined ? { body: toBase64(bytes), bodyEncoding: "base64" } : { body: text, bodyEncoding: "text" }),
      ...(setCookie.length > 0 && { setCookie }),
    },
  };
}

/** When a `Retry-After` (seconds, or an HTTP date) says to try again, or undefined. */
export function retryAfter(header: string | null, now: number): Date | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  const at = /^\d+$/.test(trimmed) ? now + Number(trimmed) * 1_000 : Date.parse(trimmed);
  // Unreadable, or further off than a step is parked: the step's own backoff decides.
  if (!Number.isFinite(at) || at - now > MAX_RETRY_AFTER_MS) return undefined;
  return new Date(Math.max(at, now));
}

function withoutQuery(url: string): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
}

/** What went wrong with a request, without its text: the system's code, or the error's kind. */
function errorCodeOf(error: unknown): string {
  const code = (error as { cause?: { code?: unknown } })?.cause?.code ?? (error as { code?: unknown })?.code;
  return typeof code === "string" ? `the request failed (${code})` : `the request failed (${(error as Error)?.name ?? "error"})`;
}

// A byte order mark is part of the body: kept, so base64 and text give back the same bytes.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The body as text when it is valid UTF-8 without NULs (storable as JSON text as it is), else undefined. */
function decodeText(bytes: Uint8Array): string | undefined {
  try {
    const text = utf8.decode(bytes);
    return text.includes("\u0000") ? undefined : text;
  } catch {
    return undefined;
  }
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(text), (ch) => ch.charCodeAt(0));
}
