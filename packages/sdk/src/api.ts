/**
 * Calls to the executor's HTTP API. Sending events and registering the app ({@link postToExecutor}):
 * every failure becomes a {@link StepwiseApiError} carrying the status and the executor's own
 * message. During an invocation (a checkpoint, a read of stored outputs: {@link postSigned}),
 * signed by the app, over kept-alive `node:http` where the runtime has it and the client has
 * no fetch of its own; the caller reads the status and text. Redirects are never followed:
 * the request goes to the executor configured, nowhere else.
 */
import { failureReason, HEADERS, readTextCapped, sign, type NodePost } from "@stepwise/protocol";
import { StepwiseApiError } from "./errors.ts";
import type { FailureNotices } from "./notices.ts";

/** One request to the executor: JSON in, parsed JSON out. */
export interface ApiRequest {
  fetch: typeof fetch;
  url: string;
  body: string;
  headers: Record<string, string>;
  /** How long the executor may take to answer (default 30 s). */
  timeoutMs?: number;
}

/** Posts `body`; returns the parsed JSON answer (or `{}` for an empty one) of a 2xx. */
export async function postToExecutor(request: ApiRequest): Promise<unknown> {
  let response: Response;
  try {
    response = await request.fetch(request.url, {
      method: "POST",
      headers: { "content-type": "application/json", ...request.headers },
      body: request.body,
      signal: AbortSignal.timeout(request.timeoutMs ?? 30_000),
      // Not followed: the signed registration goes to the executor configured, nowhere else. ("manual": Workers have no "error".)
      redirect: "manual",
    });
  } catch (error) {
    throw new StepwiseApiError(0, `Could not reach the Stepwise executor at ${request.url}: ${failureReason(error)} (is it running? check STEPWISE_BASE_URL)`);
  }
  if (response.status >= 300 && response.status < 400) {
    throw new StepwiseApiError(response.status, `${request.url} answered a redirect (HTTP ${response.status}), which the SDK does not follow: set STEPWISE_BASE_URL to the executor's final URL`);
  }
  const text = await response.text();
  const body = parseJson(text);
  if (!response.ok) {
    const code = (body as { code?: unknown } | undefined)?.code;
    throw new StepwiseApiError(response.status, `${request.url} answered ${response.status}: ${messageOf(body, text)}`, typeof code === "string" ? code : undefined);
  }
  return body ?? {};
}

function parseJson(text: string): unknown {
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The executor's explanation: `error` or `message` of a JSON body, else the raw text. */
export function messageOf(body: unknown, text: string): string {
  if (typeof body === "object" && body !== null) {
    const { error, message } = body as { error?: unknown; message?: unknown };
    const found = error ?? message;
    if (typeof found === "string") return found;
    if (typeof found === "object" && found !== null && typeof (found as { message?: unknown }).message === "string") {
      return (found as { message: string }).message;
    }
  }
  return text.slice(0, 500) || "(empty answer)";
}

export interface ExecutorTransport {
  /** Used when the client was given a fetch of its own (tests, proxies) or the runtime has no `node:http`. */
  fetch: typeof fetch;
  /** The keep-alive `node:http` POST, when the client uses the runtime's own fetch. */
  post?: NodePost;
  /** The executor's base URL. */
  baseUrl: string;
  signingKey: string;
  /** Where failures on the way are reported, one line per kind per interval. */
  notices: FailureNotices;
}

/** An answer: its status and text (null when it passed `maxBytes`). */
export interface ExecutorAnswer {
  status: number;
  text: string | null;
}

/** POSTs `body` to `route`, signed with the app's key. Throws when the call fails on the way (refused, reset, timed out). */
export async function postSigned(
  transport: ExecutorTransport,
  route: string,
  body: string,
  limits: { timeoutMs: number; maxBytes: number },
): Promise<ExecutorAnswer> {
  const url = `${transport.baseUrl}${route}`;
  const headers = { "content-type": "application/json", [HEADERS.signature]: await sign(transport.signingKey, { method: "POST", target: route, body }) };
  if (transport.post) return transport.post(url, body, { headers, ...limits });
  const response = await transport.fetch(url, { method: "POST", headers, body, signal: AbortSignal.timeout(limits.timeoutMs), redirect: "manual" });
  return { status: response.status, text: await readTextCapped(response, limits.maxBytes) };
}

/** Whether an answer's text is the executor's `{ "ok": true, … }` (a 200 from a proxy or a login page is not). */
export function answeredOk(text: string | null): boolean {
  try {
    return (JSON.parse(text ?? "") as { ok?: unknown } | null)?.ok === true;
  } catch {
    return false;
  }
}
