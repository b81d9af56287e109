/**
 * Calls an app's `/api/durable` for one invocation: signs it (method, path, function and body), bounds the time and the
 * size of the answer (over kept-alive node:http on Node, through fetch elsewhere), and turns every failure (unreachable app, 401, garbage) into an
 * `error` answer that says whether a retry makes sense, so the run's retry policy decides. The one exception: an SDK that
 * says it could not start the invocation (nothing ran) throws {@link InvocationNotStarted}, retried as a job, not an attempt.
 * An invocation whose steps are in the compact form and is answered 400 is sent again at once with every field ({@link FullFormFallback}).
 */
import {
  failureReason,
  HEADERS,
  InvokeResponseSchema,
  nodePost,
  PostError,
  readTextCapped,
  requestTarget,
  sign,
  type InvokeRequestWire,
  type InvokeResponse,
  type PostAnswer,
} from "@stepwise/protocol";
import { DeploymentGone, InvocationNotStarted } from "./errors.ts";
import { formatBytes } from "./limits.ts";

export interface InvokerOptions {
  signingKey: string;
  /** An app's own key, where it has one (see `ExecutorOptions.appSigningKeys`). */
  appSigningKeys?: Readonly<Record<string, string>>;
  /** The next shared key during a rotation: what was sealed under it can be opened. */
  signingKeyNext?: string;
  timeoutMs: number;
  maxResponseBytes: number;
  fetch?: typeof fetch;
}

/**
 * For a request whose steps are in the compact form: an instance older than the app's
 * registration (a rolling deploy, a rollback) cannot read that form and answers 400, which
 * would otherwise fail the run. The same request is then sent at once with every field.
 */
export interface FullFormFallback {
  /** The same request with every field. */
  request(): InvokeRequestWire;
  /** The app answered the compact form 400; the full form goes next. */
  refused(): void;
  /**
   * How the full form fared, when that is known: `read`, the SDK answered it (an answer, or
   * nothing started); else it was answered 400 too, for a reason of the app's own. `reason` is
   * what the app said to the compact form.
   */
  fullForm(read: boolean, reason: string): void;
}

/**
 * Calls `app.url`. With `app.pinned` (a run invoked at the deployment of the version it started
 * on, not the current one), an answer that says the deployment is gone throws
 * {@link DeploymentGone}: a 404 or 410, or a connection refused or a host not found (`refused`:
 * gone only once that lasts), none of which ran anything. A timeout or a 5xx is the app's,
 * retried there as ever.
 */
export async function invokeApp(
  options: InvokerOptions,
  app: { id: string; url: string; pinned?: boolean },
  functionId: string,
  request: InvokeRequestWire,
  /** Sent along (the invocation's trace context). */
  extraHeaders: Record<string, string> = {},
  fallback?: FullFormFallback,
): Promise<InvokeResponse> {
  const url = new URL(app.url);
  url.searchParams.set("fnId", functionId);
  let sent = await post(options, app, url, request, extraHeaders);
  if (fallback && "answer" in sent && sent.answer.status === 400) {
    const reason = errorMessage(sent.answer.text ?? "");
    fallback.refused();
    sent = await post(options, app, url, fallback.request(), extraHeaders);
    if ("answer" in sent && (sent.answer.status === 400 || readBySdk(sent.answer))) fallback.fullForm(sent.answer.status !== 400, reason);
  }
  return "answer" in sent ? readAnswer(options, app, `${url.origin}${url.pathname}`, sent.answer) : sent.failed;
}

/**
 * Whether an answer is the SDK's after reading the invocation: an answer in the protocol's
 * shape, or its word that nothing started. Not a proxy's 500 or 503 page.
 */
function readBySdk({ status, text }: PostAnswer): boolean {
  if (text === null) return false;
  if (status === 503) return notStarted(text);
  const parsed = sdkAnswer(status, text);
  return parsed !== null && "response" in parsed;
}

/** Signs and posts one invocation: the app's answer, or what its failing to come means for the run. */
async function post(
  options: InvokerOptions,
  app: { id: string; url: string; pinned?: boolean },
  url: URL,
  request: InvokeRequestWire,
  extraHeaders: Record<string, string>,
): Promise<{ answer: PostAnswer } | { failed: InvokeResponse }> {
  const body = JSON.stringify(request);
  const headers = { ...extraHeaders, "content-type": "application/json", [HEADERS.signature]: await sign(signingKeyOf(options, app.id), { method: "POST", target: requestTarget(url), body }) };
  try {
    // A fetch given in the options (tests, the simulation's faulty network) wins over node:http.
    return { answer: !options.fetch && nodePost ? await nodePost(url.href, body, { headers, timeoutMs: options.timeoutMs, maxBytes: options.maxResponseBytes }) : await viaFetch(options, url, body, headers) };
  } catch (error) {
    const code = errorCode(error);
    if (app.pinned && (code === "ECONNREFUSED" || code === "ENOTFOUND")) throw new DeploymentGone(`could not be reached (${code})`, true);
    const where = `${url.origin}${url.pathname}`;
    if (error instanceof PostError && error.stage === "answer") {
      // The connection broke or the time ran out while the answer was on its way.
      return { failed: appError("AppUnreachable", `The answer from ${where} was cut off: ${error.message}`, true) };
    }
    return { failed: appError("AppUnreachable", `Could not reach ${where}: ${failureReason(error)}`, true) };
  }
}

/** What the app's answer means for the run. */
function readAnswer(options: InvokerOptions, app: { pinned?: boolean }, where: string, { status, location, text }: PostAnswer): InvokeResponse {
  if (app.pinned && (status === 404 || status === 410)) throw new DeploymentGone(`answered HTTP ${status}`);
  if (status >= 300 && status < 400) {
    return appError("AppRedirected", `The app answered a redirect (HTTP ${status}${location ? ` to ${location.slice(0, 200)}` : ""}), which Stepwise does not follow: register the app's final URL`, true);
  }
  if (text === null) {
    return appError("AppResponseTooLarge", `The app's answer exceeds ${formatBytes(options.maxResponseBytes)}`, false);
  }
  if (status === 503 && notStarted(text)) throw new InvocationNotStarted(`${where} could not start the invocation: ${errorMessage(text)}`);
  const parsed = sdkAnswer(status, text);
  if (parsed && "response" in parsed) return parsed.response;
  // Well-formed JSON in the shape of an answer that breaks the protocol: the same code would send it again.
  if (parsed) return appError("AppAnswerInvalid", `The app's answer (HTTP ${status}) breaks the protocol: ${parsed.problem}`, false);
  const detail = errorMessage(text);
  // 400 means the executor sent something the SDK cannot read: retrying would not help.
  return appError("AppError", `The app answered HTTP ${status}${detail ? `: ${detail}` : ""}`, status !== 400);
}

/** The system's code of a failed request: Node's own, or the cause of fetch's "fetch failed". */
function errorCode(error: unknown): string | undefined {
  const own = (error as { code?: unknown } | undefined)?.code;
  const cause = ((error as { cause?: { code?: unknown } } | undefined)?.cause)?.code;
  return typeof own === "string" ? own : typeof cause === "string" ? cause : undefined;
}

/** The invocation through fetch (Workers, or a fetch given in the options), read like {@link nodePost} reads it. */
async function viaFetch(options: InvokerOptions, url: URL, body: string, headers: Record<string, string>): Promise<PostAnswer> {
  const response = await (options.fetch ?? fetch)(url, {
    method: "POST",
    headers,
    body,
    signal: AbortSignal.timeout(options.timeoutMs),
    // A redirect would carry the signed request to a URL nobody checked (a metadata address).
    // ("manual": Workers have no "error".)
    redirect: "manual",
  });
  const location = response.headers.get("location");
  if (response.status >= 300 && response.status < 400) {
    await response.body?.cancel().catch(() => {});
    return { status: response.status, location, text: "" };
  }
  try {
    return { status: response.status, location, text: await readTextCapped(response, options.maxResponseBytes) };
  } catch (error) {
    throw new PostError("answer", error instanceof Error ? error.message : String(error));
  }
}

/**
 * `STEPWISE_APP_SIGNING_KEYS`: `shop=<key>,billing=<key>`, each app's own key. Throws with what
 * is wrong, so a typo stops the executor at start instead of leaving an app on the shared key.
 */
export function parseAppSigningKeys(text: string | undefined): Record<string, string> {
  const keys: Record<string, string> = {};
  const entries = (text ?? "").split(",").map((part) => part.trim()).filter(Boolean);
  for (const [index, entry] of entries.entries()) {
    const at = entry.indexOf("=");
    const appId = entry.slice(0, at).trim();
    const key = entry.slice(at + 1).trim();
    // Never echo the entry: it may be a key.
    if (at <= 0 || !key) throw new Error(`STEPWISE_APP_SIGNING_KEYS: entry ${index + 1} is not <app id>=<key>`);
    if (Object.hasOwn(keys, appId)) throw new Error(`STEPWISE_APP_SIGNING_KEYS: app "${appId}" is listed twice`);
    keys[appId] = key;
  }
  return keys;
}

/** The key app `appId` is signed for: its own, else the shared one. */
export function signingKeyOf(options: Pick<InvokerOptions, "signingKey" | "appSigningKeys">, appId: string): string {
  return ownSigningKey(options.appSigningKeys, appId) ?? options.signingKey;
}

/** The keys a token signed for app `appId` may carry: its own, else the shared one and, during a rotation, the next. */
export function acceptedKeysOf(options: { signingKey: string; signingKeyNext?: string; appSigningKeys?: Readonly<Record<string, string>> }, appId: string): string[] {
  const own = ownSigningKey(options.appSigningKeys, appId);
  if (own) return [own];
  return options.signingKeyNext ? [options.signingKey, options.signingKeyNext] : [options.signingKey];
}

/** App `appId`'s own key, if it has one (an ID like "constructor" is not a key). */
export function ownSigningKey(appSigningKeys: Readonly<Record<string, string>> | undefined, appId: unknown): string | undefined {
  return typeof appId === "string" && appSigningKeys && Object.hasOwn(appSigningKeys, appId) ? appSigningKeys[appId] : undefined;
}

function appError(name: string, message: string, retriable: boolean): InvokeResponse {
  return { type: "error", error: { name, message }, retriable };
}

/** An answer with a status the SDK answers with (see {@link parseAnswer}); null for any other status. */
function sdkAnswer(status: number, text: string): ReturnType<typeof parseAnswer> {
  return [200, 206, 500].includes(status) ? parseAnswer(text) : null;
}

/** The answer, or what is wrong with a JSON answer that claims to be one; null for anything else (HTML, truncated JSON). */
function parseAnswer(text: string): { response: InvokeResponse } | { problem: string } | null {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return null;
  }
  const result = InvokeResponseSchema.safeParse(body);
  if (result.success) return { response: result.data };
  const looksLikeAnswer = typeof body === "object" && body !== null && "type" in body;
  if (!looksLikeAnswer) return null;
  const issue = result.error.issues[0];
  return { problem: `${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "malformed"}` };
}

/** The SDK's `503 { error, notStarted: true }`: nothing of the function ran (docs/wire-protocol.md, "Outputs left out"). */
function notStarted(text: string): boolean {
  try {
    return (JSON.parse(text) as { notStarted?: unknown } | null)?.notStarted === true;
  } catch {
    return false;
  }
}

function errorMessage(text: string): string {
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown };
    return String(body.error ?? body.message ?? "").slice(0, 500);
  } catch {
    return text.slice(0, 200);
  }
}
