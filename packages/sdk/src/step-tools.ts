/**
 * The `step` object handed to functions. Each tool only describes its step (name, kind, code,
 * and how to plan it as an op); the replay decides whether it returns a stored result,
 * throws a stored error, never settles, or becomes new work. See `replay.ts`. The tools of
 * answers from outside (signals, callback URLs) are planned in `step-answers.ts`, the calls the
 * executor makes (`fetch`, `ai.infer`) in `step-calls.ts`.
 */
import {
  celProblem,
  globalFunctionId,
  issuesText,
  MAX_LOOKBACK_MS,
  StepRetryPolicySchema,
  toMs,
  type BackoffConfig,
  type Duration,
  type Op,
  type StepKind,
  type StepRetryPolicy,
  type TokenUsage,
} from "@stepwise/protocol";
import { planFetch, planInfer, responseOf, usageOfResult, type AiTools, type StepFetchInit } from "./step-calls.ts";
import { callbackTimeout, planCallbackWait, planSignalWait, receivedCallback, receivedSignal, type CallbackUrl, type ReceivedCallback, type ReceivedSignal, type WaitForSignalOptions } from "./step-answers.ts";
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
      const { name, retry } = named(step);
      if (retry instanceof Error) return Promise.reject(retry);
      if (typeof fn !== "function") return Promise.reject(new TypeError(`step.run("${name}"): the second argument must be a function`));
      return dispatch({ name, kind: "run", fn, plan: planRun, ...(retry && { retry }) }) as Promise<never>;
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

/** A step's name and own retry policy, from a name or `{ id, retries, backoff }`. */
function named(step: string | StepRunOptions): { name: string; retry: StepRetryPolicy | undefined | NonRetriableError } {
  if (typeof step !== "object" || step === null) return { name: step, retry: undefined };
  const { id, ...policy } = step;
  return { name: id, retry: runPolicy(id, policy) };
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
