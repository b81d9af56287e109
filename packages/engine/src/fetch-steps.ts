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
 * - **Failures**: a network error, a timeout, a 429 or a 5xx is a failed attempt, retried per
 *   the step's retry policy; a `Retry-After` sets the retry's time exactly. Any other status is
 *   a response, handed to the function as `fetch` would.
 */
import { appUrlProblem } from "./app-urls.ts";
import { DEFAULT_FETCH_TIMEOUT_MS, failureReason, FetchRequestSchema, type FetchRequest, type FetchResponse, type SerializedError } from "@stepwise/protocol";
import { serializedError } from "./errors.ts";
import { formatBytes } from "./limits.ts";
import { formatDuration } from "./log.ts";

/** What one attempt came to: a response to store, or a failure to retry or fail the step with. */
export type FetchOutcome = { ok: true; response: FetchResponse } | { ok: false; error: SerializedError; retriable: boolean; retryAt?: string };

/** Why the executor will not make a request to `url`, or null. */
export function fetchUrlProblem(url: string): string | null {
  // Private hosts allowed; link-local and metadata never (the same rules as app URLs otherwise).
  return appUrlProblem(url, { allowPrivate: true })?.replace(/the app URL/g, "the URL") ?? null;
}

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

/** The request a {@link sealRequest} sealed; throws when the key is another or the text was changed. */
export async function openRequest(secret: string, sealed: string): Promise<FetchRequest> {
  const [version, iv, data] = sealed.split(".");
  if (version !== SEAL_VERSION || !iv || !data) throw new Error("the stored request is not one this executor sealed");
  const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: fromBase64(iv) }, await sealKey(secret), fromBase64(data));
  return FetchRequestSchema.parse(JSON.parse(new TextDecoder().decode(plain)));
}

/** Makes one attempt of `request`; a response over `maxBytes` fails the step for good. */
export async function performFetch(request: FetchRequest, options: { maxBytes: number; fetch?: typeof fetch; now?: number }): Promise<FetchOutcome> {
  const target = fetchTarget(request);
  const timeoutMs = request.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  let response: Response;
  try {
    response = await (options.fetch ?? fetch)(request.url, {
      method: request.method ?? "GET",
      headers: request.headers,
      body: request.body,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const timedOut = (error as Error)?.name === "TimeoutError";
    const why = timedOut ? `no answer within ${formatDuration(timeoutMs)}` : failureReason(error);
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
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (bytes.byteLength > options.maxBytes) {
    return { ok: false, error: serializedError("FetchResponseTooLarge", `step.fetch ${target} answered ${formatBytes(bytes.byteLength)}; a step stores at most ${formatBytes(options.maxBytes)}`), retriable: false };
  }
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => (headers[name] = value));
  const text = decodeText(bytes);
  return {
    ok: true,
    response: { status: response.status, statusText: response.statusText, headers, url: response.url || request.url, ...(text === undefined ? { body: toBase64(bytes), bodyEncoding: "base64" } : { body: text, bodyEncoding: "text" }) },
  };
}

/** When a `Retry-After` (seconds, or an HTTP date) says to try again, or undefined. */
export function retryAfter(header: string | null, now: number): Date | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return new Date(now + Number(trimmed) * 1_000);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : new Date(Math.max(at, now));
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

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
