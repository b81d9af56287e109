/**
 * Calls the executor makes for a run, as steps: `step.fetch` (any HTTP request) and
 * `step.ai.infer` (a model provider's API, a fetch step of kind `ai`), and the tokens a wrapped
 * SDK call reports (`step.ai.wrap`). How each is planned as an op, and what its stored answer
 * gives the function.
 */
import { FetchResponseSchema, MAX_FETCH_TIMEOUT_MS, readTokenUsage, toMs, type Duration, type TokenUsage } from "@stepwise/protocol";
import type { EnvSource } from "./env.ts";
import { NonRetriableError } from "./errors.ts";
import type { Jsonify } from "./jsonify.ts";
import type { PlannedOp, StepRunOptions } from "./step-tools.ts";

/** The options of `step.fetch`: `fetch`'s, with a text body, and how long to wait for an answer. */
export interface StepFetchInit {
  method?: string;
  headers?: Headers | Record<string, string> | Array<[string, string]>;
  /** Text (JSON.stringify an object; send binary as base64 of your own). */
  body?: string;
  /** How long one attempt may take (default `"5m"`, at most `"2h"`). */
  timeout?: Duration;
}

/** Where `step.ai.infer` sends its request. */
export type AiProvider =
  /** An OpenAI-compatible chat completions API: `OPENAI_BASE_URL` (default `https://api.openai.com/v1`) and `OPENAI_API_KEY`. */
  | "openai"
  /** Anthropic's messages API: `ANTHROPIC_BASE_URL` (default `https://api.anthropic.com`) and `ANTHROPIC_API_KEY`. */
  | "anthropic"
  /** Any URL that takes the body as JSON, with headers of your own (a key among them). */
  | { url: string; headers?: Record<string, string> };

/** Options of `step.ai.infer`. */
export interface AiInferOptions {
  provider: AiProvider;
  model: string;
  /** The provider's request body (`messages`, `max_tokens`…); `model` is added to it. */
  body: Record<string, unknown>;
  /** How long one attempt may take (default `"5m"`, at most `"2h"`). */
  timeout?: Duration;
}

/** Model calls as steps: made by the executor (`infer`) or by your code (`wrap`), tokens recorded. */
export interface AiTools {
  /**
   * Has the executor call the model (a `step.fetch` under the hood: the app is not invoked
   * while the model thinks) and resolves to the provider's JSON answer. The step records the
   * model and the tokens the answer reports, which the run API adds up per run. A 429 or 5xx
   * is retried per the step's retry policy (pass `{ id, retries, backoff }` to set it), at
   * the time a `Retry-After` names; another error status fails the step with the provider's
   * message. Keys come from the app's environment and are stored only sealed.
   */
  infer<T = unknown>(step: string | StepRunOptions, options: AiInferOptions): Promise<Jsonify<T>>;
  /**
   * Runs `fn(...args)` as a step in the app (an SDK call such as the Vercel AI SDK's
   * `generateText`) and records the tokens its result reports (`usage` with `inputTokens` /
   * `outputTokens`, or `promptTokens` / `completionTokens`), with its model where it says.
   */
  wrap<A extends unknown[], T>(step: string | StepRunOptions, fn: (...args: A) => T, ...args: A): Promise<Jsonify<Awaited<T>>>;
}

/** The app's environment: `process.env` where there is one, under a Worker's bindings (text ones) when serve() was given them. */
function environment(env: EnvSource | undefined): Record<string, string | undefined> {
  const fromProcess = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};
  const bindings = env ? Object.entries(env).filter((entry): entry is [string, string] => typeof entry[1] === "string") : [];
  return { ...fromProcess, ...Object.fromEntries(bindings) };
}

/** A model call's request, for the provider named; a NonRetriableError for a missing key or a bad option. */
export function planInfer(name: string, options: AiInferOptions, envSource: EnvSource | undefined): PlannedOp {
  const { provider, model, body } = options ?? ({} as AiInferOptions);
  if (typeof model !== "string" || model.length === 0) throw new NonRetriableError(`step.ai.infer("${name}"): model must be a model's name, e.g. "gpt-4o-mini"`);
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new NonRetriableError(`step.ai.infer("${name}"): body must be the provider's request body, an object`);
  const env = environment(envSource);
  const key = (variable: string) => {
    const value = env[variable];
    if (!value) throw new NonRetriableError(`step.ai.infer("${name}"): set ${variable} in the app's environment, or pass provider: { url, headers } with a key of your own`);
    return value;
  };
  const target =
    provider === "openai"
      ? { url: `${(env.OPENAI_BASE_URL || "https://api.openai.com/v1").replace(/\/+$/, "")}/chat/completions`, headers: { authorization: `Bearer ${key("OPENAI_API_KEY")}` } }
      : provider === "anthropic"
        ? { url: `${(env.ANTHROPIC_BASE_URL || "https://api.anthropic.com").replace(/\/+$/, "")}/v1/messages`, headers: { "x-api-key": key("ANTHROPIC_API_KEY"), "anthropic-version": "2023-06-01" } }
        : typeof provider === "object" && provider !== null && typeof provider.url === "string"
          ? { url: provider.url, headers: provider.headers ?? {} }
          : undefined;
  if (!target) throw new NonRetriableError(`step.ai.infer("${name}"): provider must be "openai", "anthropic" or { url, headers? }, not ${JSON.stringify(provider)}`);
  const planned = planFetch(name, target.url, { method: "POST", headers: { ...target.headers, "content-type": "application/json" }, body: JSON.stringify({ ...body, model }), ...(options.timeout !== undefined && { timeout: options.timeout }) });
  return { ...(planned as Extract<PlannedOp, { op: "fetch" }>), ai: { model } };
}

/** The tokens a wrapped SDK call's result reports: the AI SDK's `usage` (either naming), with its model. */
export function usageOfResult(value: unknown): TokenUsage | undefined {
  const { usage, response } = (value ?? {}) as { usage?: unknown; response?: { modelId?: unknown } };
  return readTokenUsage(usage, { input: ["inputTokens", "promptTokens"], output: ["outputTokens", "completionTokens"] }, response?.modelId);
}

export function planFetch(name: string, input: string | URL, init: StepFetchInit = {}): PlannedOp {
  const url = String(input);
  if (!/^https?:\/\//i.test(url)) throw new NonRetriableError(`step.fetch("${name}"): the URL must be http:// or https://, not ${JSON.stringify(url).slice(0, 100)}`);
  const parsed = URL.canParse(url) ? new URL(url) : undefined;
  if (!parsed) throw new NonRetriableError(`step.fetch("${name}"): not a URL`);
  if (parsed.username || parsed.password) throw new NonRetriableError(`step.fetch("${name}"): the URL carries a user name or password; send credentials in a header (authorization)`);
  const method = (init.method ?? "GET").toUpperCase();
  if (init.body !== undefined && (method === "GET" || method === "HEAD")) throw new NonRetriableError(`step.fetch("${name}"): a ${method} request has no body`);
  if (init.body !== undefined && typeof init.body !== "string") throw new NonRetriableError(`step.fetch("${name}"): body must be text (JSON.stringify an object)`);
  let timeoutMs: number | undefined;
  if (init.timeout !== undefined) {
    timeoutMs = toMs(init.timeout);
    if (!(timeoutMs >= 1 && timeoutMs <= MAX_FETCH_TIMEOUT_MS)) throw new NonRetriableError(`step.fetch("${name}"): timeout must be between 1ms and 2h, not ${JSON.stringify(init.timeout)}`);
  }
  const headers: Record<string, string> = {};
  new Headers(init.headers).forEach((value, key) => (headers[key] = value));
  return {
    op: "fetch",
    request: { url, ...(init.method && { method: init.method.toUpperCase() }), ...(Object.keys(headers).length > 0 && { headers }), ...(init.body !== undefined && { body: init.body }), ...(timeoutMs && { timeoutMs: Math.round(timeoutMs) }) },
  };
}

/** The stored answer of a fetch step as a `Response`; a NonRetriableError naming the step for anything else. */
export function responseOf(name: string, stored: unknown): Response {
  const parsed = FetchResponseSchema.safeParse(stored);
  if (!parsed.success) throw new NonRetriableError(`step.fetch("${name}"): its stored result is not a response: ${JSON.stringify(stored)?.slice(0, 200)}`);
  const { status, statusText, body, bodyEncoding, setCookie } = parsed.data;
  const headers = new Headers(parsed.data.headers);
  if (setCookie) {
    headers.delete("set-cookie");
    for (const cookie of setCookie) headers.append("set-cookie", cookie);
  }
  const noBody = status === 204 || status === 205 || status === 304;
  const bytes = bodyEncoding === "base64" ? Uint8Array.from(atob(body), (ch) => ch.charCodeAt(0)) : body;
  return new Response(noBody ? null : bytes, { status, statusText, headers });
}
