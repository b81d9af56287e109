/**
 * The app's own requests to the executor during an invocation (a checkpoint, a read of stored
 * outputs): signed POSTs to one of its routes, over kept-alive `node:http` where the runtime
 * has it and the client has no fetch of its own, else through fetch. Redirects are never
 * followed: a 3xx is a failed call, not a request sent on to wherever it points.
 */
import { HEADERS, readTextCapped, sign, type NodePost } from "@stepwise/protocol";
import type { Logger } from "./types.ts";

export interface ExecutorTransport {
  /** Used when the client was given a fetch of its own (tests, proxies) or the runtime has no `node:http`. */
  fetch: typeof fetch;
  /** The keep-alive `node:http` POST, when the client uses the runtime's own fetch. */
  post?: NodePost;
  /** The executor's base URL. */
  baseUrl: string;
  signingKey: string;
  log: Logger;
}

/** An answer: its status and text (null when it passed `maxBytes`). */
export interface ExecutorAnswer {
  status: number;
  text: string | null;
}

/** POSTs `body` to `route`, signed with the app's key. Throws when the call fails on the way (refused, reset, timed out). */
export async function postToExecutor(
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

/** Why a call failed, in words: fetch says only "fetch failed", its cause (refused, reset) says what happened. */
export function failureReason(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause as { message?: unknown; code?: unknown } | undefined;
  const detail = cause && (typeof cause.message === "string" && cause.message ? cause.message : typeof cause.code === "string" ? cause.code : "");
  return detail ? `${error.message} (${detail})` : error.message;
}
