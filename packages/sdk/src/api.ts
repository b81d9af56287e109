/**
 * Calls to the executor's HTTP API (sending events, registering the app). Every failure
 * becomes a {@link StepwiseApiError} carrying the status and the executor's own message.
 */
import { StepwiseApiError } from "./errors.ts";

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
    const reason = error instanceof Error ? error.message : String(error);
    throw new StepwiseApiError(0, `Could not reach the Stepwise executor at ${request.url}: ${reason} (is it running? check STEPWISE_BASE_URL)`);
  }
  if (response.status >= 300 && response.status < 400) {
    throw new StepwiseApiError(response.status, `${request.url} answered a redirect (HTTP ${response.status}), which the SDK does not follow: set STEPWISE_BASE_URL to the executor's final URL`);
  }
  const text = await response.text();
  const body = parseJson(text);
  if (!response.ok) {
    throw new StepwiseApiError(response.status, `${request.url} answered ${response.status}: ${messageOf(body, text)}`);
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
