/**
 * The `step` object handed to functions. Each tool only describes its step (name, kind, code,
 * and how to plan it as an op); the replay decides whether it returns a stored result,
 * throws a stored error, never settles, or becomes new work. See `replay.ts`.
 */
import {
  CALLBACK_EVENT,
  celProblem,
  globalFunctionId,
  issuesText,
  FetchResponseSchema,
  MAX_CALLBACK_TIMEOUT_MS,
  MAX_FETCH_TIMEOUT_MS,
  MAX_TOKEN_COUNT,
  MAX_LOOKBACK_MS,
  SIGNAL_EVENT,
  SignalConflictSchema,
  SignalNameSchema,
  StepRetryPolicySchema,
  toMs,
  type BackoffConfig,
  type Duration,
  type Op,
  type SignalConflict,
  type StepKind,
  type StepRetryPolicy,
  type TokenUsage,
} from "@stepwise/protocol";
import type { AnyStepwiseFunction, FunctionOutput, InvokeData } from "./function.ts";
import { NonRetriableError } from "./errors.ts";
import { StepwiseFunction } from "./function.ts";
import type { EnvSource } from "./env.ts";
import type { Jsonify } from "./jsonify.ts";
import type { EventName, EventSchemas, SendEventPayload, SendResult, TypedEvent } from "./types.ts";
import { validateEvents } from "./validate.ts";

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** The op-specific part of a new step's op; the replay adds `id`, `name` and `position`. */
export type PlannedOp = DistributiveOmit<Exclude<Op, { op: "step-ran" | "step-failed" }>, "id" | "name" | "position">;

/** One call of a step tool, as the replay sees it. */
export interface StepCall {
  name: string;
  kind: StepKind;
  /** The code of a `run` step. */
  fn?: (context: StepRunContext) => unknown;
  /** A `run` step's own retry policy, reported with each of its failures. */
  retry?: StepRetryPolicy;
  /** A `run` step's model tokens, read from what its code returned (`step.ai.wrap`). */
  usage?: (value: unknown) => TokenUsage | undefined;
  /** Describes the step as an op; only called for a step that has nothing stored, so a
   * schema changed since does not break replays of steps already done. May throw. */
  plan: () => PlannedOp;
}

/** Receives every step call; implemented by the replay. */
export type StepDispatcher = (call: StepCall) => Promise<unknown>;

/** The first argument of `step.run` when the step has options of its own. */
export interface StepRunOptions {
  /** The step's name (its ID in the run; a repeated name gets a counter). */
  id: string;
  /** Retries after the first attempt for this step alone (0-20; default: the function's `retries`). */
  retries?: number;
  /** Backoff between this step's retries, over the function's (`initialMs * factor^n`, capped at `maxMs`). */
  backoff?: BackoffConfig;
}

/**
 * What the code of a `step.run` is told about its execution. Pass `idempotencyKey` to the API
 * the step calls (a payment, an email, a model provider's idempotency header): a step can run
 * again after it did its work (the app died before its result was stored, a retry after a
 * timeout), and the API then recognises the repeat.
 */
export interface StepRunContext {
  /**
   * The same on every execution of this step in this run, retries and replays included, and
   * different for every other step and run: `stepwise-` and the hex SHA-256 of the run ID and
   * the step ID (73 characters). A new run (a replay or rerun from the dashboard) has new keys.
   */
  idempotencyKey: string;
  /**
   * This step's attempt as the executor counts them, from 0: each retry it schedules for this
   * step alone (after the step threw, or after the invocation running just this step failed) is
   * one more. A step that ran inside an invocation that then failed as a whole runs again with
   * the function's body, at 0 (the function's own `attempt` counts that). Not a count of
   * executions: use the key, not the attempt, to recognise a repeat.
   */
  attempt: number;
}

/** Options of `step.waitForEvent`. */
export interface WaitForEventOptions<N extends string> {
  /** The name of the event to wait for. */
  event: N;
  /** How long to wait before resolving `null`. */
  timeout: Duration;
  /** A dotted path (`"data.orderId"`) whose value must be equal in the trigger and the awaited event. */
  match?: string;
  /** A CEL expression over `event` (the trigger) and `async` (the candidate event). */
  if?: string;
  /**
   * Also accept an event stored up to this long before the wait began (at most `"7d"`), the
   * earliest that matches: for a reply that can beat the run to the wait. Without it, the wait
   * sees events stored since the run's current invocation became due.
   */
  lookback?: Duration;
}

/** Options of `step.waitForSignal`. */
export interface WaitForSignalOptions {
  /**
   * The signal's name, which the sender uses too (`stepwise.sendSignal({ signal })`): make it
   * unique to this wait, e.g. `approval/${requestId}`. At most 256 characters.
   */
  signal: string;
  /** How long to wait before resolving `null`. */
  timeout: Duration;
  /**
   * When another run already waits for this signal: `"fail"` (default) fails this step with a
   * `SignalConflict` error; `"replace"` takes the signal over, and the other wait resolves
   * `null` at its timeout.
   */
  onConflict?: SignalConflict;
}

/** What `step.waitForSignal` resolves to when its signal arrives. */
export interface ReceivedSignal<T = unknown> {
  signal: string;
  /** The `data` the sender gave (`null` when it gave none). */
  data: T;
}

/** A callback URL of the run (`step.createCallback`): hand `url` to whoever answers; pass the whole object to `step.waitForCallback`. */
export interface CallbackUrl {
  /** Names the callback for `step.waitForCallback`. */
  id: string;
  /** POST here (no key needed) to resume the run; it takes one POST, until `expiresAt`. */
  url: string;
  /** When the URL stops working (ISO time); the wait resolves `null` then. */
  expiresAt: string;
}

/** What `step.waitForCallback` resolves to: the POST the callback URL received. */
export interface ReceivedCallback<T = unknown> {
  /** The body: parsed when it was sent as JSON, else its text. */
  body: T;
  /** The request's headers, lower-cased (without `authorization` and `cookie`). */
  headers: Record<string, string>;
}

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

/** Options of `step.invoke`. */
export interface InvokeOptions<F extends AnyStepwiseFunction> {
  /** The function to run as a child run (from this app or another one). */
  function: F;
  /** The `data` of the event the child receives. */
  data: InvokeData<F>;
  /** Fail the step if the child has not finished by then. */
  timeout?: Duration;
}

/**
 * The step tools. Every tool takes a step name (unique names are clearer; a repeated name gets
 * a counter) and is memoized: once its result is stored, replays return it without running
 * anything. Results are stored as JSON, so they come back as `Jsonify<T>` (Dates as strings...).
 */
export interface StepTools<S extends EventSchemas> {
  /**
   * Runs `fn` once (retried on error) and returns its JSON result on every replay. Pass
   * `{ id, retries, backoff }` instead of a name to give this step a retry policy of its own.
   * `fn` receives the step's `idempotencyKey` and `attempt` ({@link StepRunContext}).
   */
  run<T>(step: string | StepRunOptions, fn: (context: StepRunContext) => T): Promise<Jsonify<Awaited<T>>>;
  /** Pauses the run for `duration` (ms, or `"30s"`, `"5m"`, `"2h"`, `"1d"`). */
  sleep(name: string, duration: Duration): Promise<void>;
  /** Pauses the run until `until` (a Date or an ISO string). */
  sleepUntil(name: string, until: Date | string): Promise<void>;
  /** Waits for an event; resolves it, or `null` when `timeout` passes first. */
  waitForEvent<const N extends EventName<S>>(name: string, options: WaitForEventOptions<N>): Promise<TypedEvent<S, N> | null>;
  /**
   * Waits for a signal addressed to this run by name: resolves `{ signal, data }` when
   * `stepwise.sendSignal` (or `POST /api/signals`) sends it, or `null` when `timeout` passes
   * first. One run waits for a signal at a time (see `onConflict`); a signal sent shortly before
   * the run reaches this step still resumes it.
   */
  waitForSignal<T = unknown>(name: string, options: WaitForSignalOptions): Promise<ReceivedSignal<Jsonify<T>> | null>;
  /**
   * Creates a callback URL for this run: a signed, single-use URL that expires after `timeout`
   * (at most `"7d"`) and needs no key, to email a person or give a webhook provider. Resolves
   * `{ id, url, expiresAt }` (stored: the same on every replay).
   */
  createCallback(name: string, options: { timeout: Duration }): Promise<CallbackUrl>;
  /**
   * Resolves to `{ body, headers }` of the first POST to `callback`'s URL, whether it came
   * before this step or after, or `null` when the URL expires first.
   */
  waitForCallback<T = unknown>(name: string, callback: CallbackUrl): Promise<ReceivedCallback<Jsonify<T>> | null>;
  /**
   * Has the executor make an HTTP request, so the app is not invoked (nor billed) while it
   * takes its time: resolves to a standard `Response` rebuilt from the stored answer, the same
   * on every replay. A network error, a timeout, a 429 or a 5xx is retried per the step's
   * retry policy (pass `{ id, retries, backoff }` as for `step.run`), waiting exactly as long
   * as a `Retry-After` says; any other status is a response, as with `fetch`. The request is
   * kept sealed until it is made (its headers may carry keys).
   */
  fetch(step: string | StepRunOptions, input: string | URL, init?: StepFetchInit): Promise<Response>;
  /** Model calls as steps, with the tokens they spend recorded: {@link AiTools}. */
  ai: AiTools;
  /** Sends events exactly once for this run (validated against the schemas); resolves their IDs. */
  sendEvent<const N extends EventName<S>>(
    name: string,
    events: SendEventPayload<S, N> | readonly SendEventPayload<S, N>[],
  ): Promise<SendResult>;
  /** Runs another function as a child run and resolves its output; its failure is thrown here. */
  invoke<F extends AnyStepwiseFunction>(name: string, options: InvokeOptions<F>): Promise<Jsonify<FunctionOutput<F>>>;
}

/** A wait's look-back in ms, or a NonRetriableError that says what is wrong with it. */
function lookbackOf(name: string, lookback: Duration): number {
  let ms: number;
  try {
    if (typeof lookback !== "number" && typeof lookback !== "string") throw new TypeError(`expected a duration ("10m", or milliseconds), not ${JSON.stringify(lookback)}`);
    ms = toMs(lookback);
  } catch (error) {
    throw new NonRetriableError(`step.waitForEvent("${name}"): lookback: ${(error as Error).message}`);
  }
  if (!(ms >= 1 && ms <= MAX_LOOKBACK_MS)) throw new NonRetriableError(`step.waitForEvent("${name}"): lookback must be between 1ms and 7d, not ${JSON.stringify(lookback)}`);
  return Math.round(ms);
}

/** Builds the step tools over `dispatch`; `schemas` validate `sendEvent`. */
export function createStepTools<S extends EventSchemas>(dispatch: StepDispatcher, schemas: EventSchemas | undefined, env?: EnvSource): StepTools<S> {
  const tools: StepTools<EventSchemas> = {
    run: (step, fn) => {
      if (typeof step === "object" && step !== null) {
        const { id, ...policy } = step;
        const retry = runPolicy(id, policy);
        if (retry instanceof Error) return Promise.reject(retry);
        if (typeof fn !== "function") return Promise.reject(new TypeError(`step.run("${id}"): the second argument must be a function`));
        return dispatch({ name: id, kind: "run", fn, plan: planRun, ...(retry && { retry }) }) as Promise<never>;
      }
      if (typeof fn !== "function") return Promise.reject(new TypeError(`step.run("${step}"): the second argument must be a function`));
      return dispatch({ name: step, kind: "run", fn, plan: planRun }) as Promise<never>;
    },
    sleep: (name, duration) =>
      dispatch({ name, kind: "sleep", plan: () => ({ op: "sleep", until: isoIn(toMs(duration)) }) }) as Promise<void>,
    sleepUntil: (name, until) =>
      dispatch({ name, kind: "sleep", plan: () => ({ op: "sleep", until: toDate(until, name).toISOString() }) }) as Promise<void>,
    waitForEvent: (name, options) =>
      dispatch({
        name,
        kind: "wait",
        plan: () => {
          // Checked for a new wait only (a stored one replays as it is): a condition that does
          // not parse would match nothing, and the wait would only time out.
          const problem = options.if === undefined ? undefined : celProblem(options.if);
          if (problem) throw new NonRetriableError(`step.waitForEvent("${name}"): if: ${problem}`);
          const lookbackMs = options.lookback === undefined ? undefined : lookbackOf(name, options.lookback);
          return {
            op: "wait",
            event: options.event,
            timeoutAt: isoIn(toMs(options.timeout)),
            ...(options.match === undefined ? {} : { match: options.match }),
            ...(options.if === undefined ? {} : { if: options.if }),
            ...(lookbackMs === undefined ? {} : { lookbackMs }),
          };
        },
      }) as Promise<never>,
    waitForSignal: (name, options) =>
      (
        dispatch({ name, kind: "wait", plan: () => planSignalWait(name, options) }) as Promise<unknown>
      ).then((stored) => receivedSignal(name, stored)) as Promise<never>,
    createCallback: (name, options) =>
      dispatch({ name, kind: "callback", plan: () => ({ op: "callback", expiresAt: isoIn(callbackTimeout(name, options?.timeout)) }) }) as Promise<CallbackUrl>,
    waitForCallback: (name, callback) =>
      (
        dispatch({ name, kind: "wait", plan: () => planCallbackWait(name, callback) }) as Promise<unknown>
      ).then((stored) => receivedCallback(name, stored)) as Promise<never>,
    fetch: (step, input, init) => {
      const { name, retry } = named(step);
      if (retry instanceof Error) return Promise.reject(retry);
      return (
        dispatch({ name, kind: "fetch", plan: () => planFetch(name, input, init), ...(retry && { retry }) }) as Promise<unknown>
      ).then((stored) => responseOf(name, stored));
    },
    ai: {
      infer: (step, options) => {
        const { name, retry } = named(step);
        if (retry instanceof Error) return Promise.reject(retry);
        return dispatch({ name, kind: "ai", plan: () => planInfer(name, options, env), ...(retry && { retry }) }) as Promise<never>;
      },
      wrap: (step, fn, ...args) => {
        const { name, retry } = named(step);
        if (retry instanceof Error) return Promise.reject(retry);
        if (typeof fn !== "function") return Promise.reject(new TypeError(`step.ai.wrap("${name}"): the second argument must be a function`));
        return dispatch({ name, kind: "run", fn: () => fn(...args), plan: planRun, usage: usageOfResult, ...(retry && { retry }) }) as Promise<never>;
      },
    },
    sendEvent: (name, events) =>
      dispatch({
        name,
        kind: "send",
        plan: () => ({ op: "send", events: validateEvents(schemas, Array.isArray(events) ? events : [events]) }),
      }) as Promise<SendResult>,
    invoke: (name, options) => dispatch({ name, kind: "invoke", plan: () => planInvoke(name, options) }) as Promise<never>,
  };
  return tools as unknown as StepTools<S>;
}

/**
 * A step's own retry policy, checked where it is written: a bad one rejects the `step.run` call
 * with a NonRetriableError naming the step and the option (the same code fails the same way on
 * every attempt, so retrying it would only delay the message).
 */
function runPolicy(id: string, policy: Omit<StepRunOptions, "id">): StepRetryPolicy | undefined | NonRetriableError {
  const checked = StepRetryPolicySchema.strict().safeParse(policy);
  if (!checked.success) {
    const problems = issuesText(checked.error.issues, "options");
    return new NonRetriableError(`step.run("${String(id)}"): ${problems}`);
  }
  const { retries, backoff } = checked.data;
  if (retries === undefined && backoff === undefined) return undefined;
  return { ...(retries !== undefined && { retries }), ...(backoff && { backoff }) };
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * What a signal wait's stored result gives the function: the signal's event as the executor
 * stores it, or `{ signal, data }` as an operator's rerun may have written it. Anything else (a
 * step that was a `waitForEvent` before a deploy) is a NonRetriableError naming the step.
 */
function receivedSignal(name: string, stored: unknown): ReceivedSignal | null {
  if (stored === null) return null;
  const shape = isObject(stored) && stored.name === SIGNAL_EVENT && isObject(stored.data) ? stored.data : stored;
  if (isObject(shape) && typeof shape.signal === "string") return { signal: shape.signal, data: shape.data ?? null };
  throw new NonRetriableError(`step.waitForSignal("${name}"): its stored result is not a signal: ${JSON.stringify(stored)?.slice(0, 200)}`);
}

/** What a callback wait's stored result gives the function, read as {@link receivedSignal} reads a signal's. */
function receivedCallback(name: string, stored: unknown): ReceivedCallback | null {
  if (stored === null) return null;
  const shape = isObject(stored) && stored.name === CALLBACK_EVENT && isObject(stored.data) ? stored.data : stored;
  if (isObject(shape) && "body" in shape) return { body: shape.body, headers: isObject(shape.headers) ? (shape.headers as Record<string, string>) : {} };
  throw new NonRetriableError(`step.waitForCallback("${name}"): its stored result is not a callback's POST: ${JSON.stringify(stored)?.slice(0, 200)}`);
}

/** A step's name and own retry policy, from a name or `{ id, retries, backoff }`. */
function named(step: string | StepRunOptions): { name: string; retry: StepRetryPolicy | undefined | NonRetriableError } {
  if (typeof step !== "object" || step === null) return { name: step, retry: undefined };
  const { id, ...policy } = step;
  return { name: id, retry: runPolicy(id, policy) };
}

/** The app's environment: `process.env` where there is one, under a Worker's bindings (text ones) when serve() was given them. */
function environment(env: EnvSource | undefined): Record<string, string | undefined> {
  const fromProcess = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};
  const bindings = env ? Object.entries(env).filter((entry): entry is [string, string] => typeof entry[1] === "string") : [];
  return { ...fromProcess, ...Object.fromEntries(bindings) };
}

/** A model call's request, for the provider named; a NonRetriableError for a missing key or a bad option. */
function planInfer(name: string, options: AiInferOptions, envSource: EnvSource | undefined): PlannedOp {
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
function usageOfResult(value: unknown): TokenUsage | undefined {
  const { usage, response } = (value ?? {}) as { usage?: Record<string, unknown>; response?: { modelId?: unknown } };
  if (typeof usage !== "object" || usage === null) return undefined;
  const count = (...keys: string[]) => keys.map((key) => usage[key]).find((n): n is number => typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= MAX_TOKEN_COUNT);
  const inputTokens = count("inputTokens", "promptTokens");
  const outputTokens = count("outputTokens", "completionTokens");
  if (inputTokens === undefined || outputTokens === undefined) return undefined;
  const model = response?.modelId;
  return { inputTokens, outputTokens, ...(typeof model === "string" && model.length <= 256 && { model }) };
}

function planFetch(name: string, input: string | URL, init: StepFetchInit = {}): PlannedOp {
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
function responseOf(name: string, stored: unknown): Response {
  const parsed = FetchResponseSchema.safeParse(stored);
  if (!parsed.success) throw new NonRetriableError(`step.fetch("${name}"): its stored result is not a response: ${JSON.stringify(stored)?.slice(0, 200)}`);
  const { status, statusText, headers, body, bodyEncoding } = parsed.data;
  const noBody = status === 204 || status === 205 || status === 304;
  const bytes = bodyEncoding === "base64" ? Uint8Array.from(atob(body), (ch) => ch.charCodeAt(0)) : body;
  return new Response(noBody ? null : bytes, { status, statusText, headers });
}

/** A callback's lifetime in ms, or a NonRetriableError naming the step. */
function callbackTimeout(name: string, timeout: Duration | undefined): number {
  let ms: number;
  try {
    ms = toMs(timeout as Duration);
  } catch (error) {
    throw new NonRetriableError(`step.createCallback("${name}"): timeout: ${(error as Error).message}`);
  }
  if (!(ms >= 1 && ms <= MAX_CALLBACK_TIMEOUT_MS)) throw new NonRetriableError(`step.createCallback("${name}"): timeout must be between 1ms and 7d, not ${JSON.stringify(timeout)}`);
  return ms;
}

function planCallbackWait(name: string, callback: CallbackUrl): PlannedOp {
  if (typeof callback?.id !== "string" || typeof callback.expiresAt !== "string") {
    throw new NonRetriableError(`step.waitForCallback("${name}"): pass the object step.createCallback resolved to, not ${JSON.stringify(callback)?.slice(0, 100)}`);
  }
  return { op: "wait-callback", callback: callback.id, timeoutAt: callback.expiresAt };
}

/** A new signal wait's op, or a NonRetriableError naming the step and what is wrong. */
function planSignalWait(name: string, options: WaitForSignalOptions): PlannedOp {
  const signal = SignalNameSchema.safeParse(options?.signal);
  if (!signal.success) throw new NonRetriableError(`step.waitForSignal("${name}"): ${signal.error.issues[0]?.message ?? "signal is not valid"}`);
  const onConflict = options.onConflict === undefined ? undefined : SignalConflictSchema.safeParse(options.onConflict);
  if (onConflict && !onConflict.success) throw new NonRetriableError(`step.waitForSignal("${name}"): onConflict must be "fail" or "replace", not ${JSON.stringify(options.onConflict)}`);
  return {
    op: "wait-signal",
    signal: signal.data,
    timeoutAt: isoIn(toMs(options.timeout)),
    ...(onConflict ? { onConflict: onConflict.data } : {}),
  };
}

/** A new `step.run`'s op: one function for every call (a replay makes a call per stored step). */
const planRun = (): PlannedOp => ({ op: "step-planned" });

function planInvoke(name: string, options: InvokeOptions<AnyStepwiseFunction>): PlannedOp {
  const target: unknown = options.function;
  if (!(target instanceof StepwiseFunction)) {
    throw new TypeError(`step.invoke("${name}"): options.function must be a function created with createFunction()`);
  }
  return {
    op: "invoke",
    functionId: globalFunctionId(target.appId, target.id),
    data: options.data ?? {},
    ...(options.timeout === undefined ? {} : { timeoutAt: isoIn(toMs(options.timeout)) }),
  };
}

function isoIn(ms: number): string {
  return new Date(Date.now() + ms).toISOString();
}

function toDate(value: Date | string, name: string): Date {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) throw new RangeError(`step.sleepUntil("${name}"): invalid date ${String(value)}`);
  return date;
}
