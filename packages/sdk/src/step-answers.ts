/**
 * Answers from outside a run, as steps: signals sent to a waiting run by name
 * (`step.waitForSignal`) and callback URLs a person or a third party POSTs to
 * (`step.createCallback`, `step.waitForCallback`). How each is planned as an op, and what its
 * stored result gives the function.
 */
import { CALLBACK_EVENT, MAX_CALLBACK_TIMEOUT_MS, SIGNAL_EVENT, SignalConflictSchema, SignalNameSchema, toMs, type Duration, type SignalConflict } from "@stepwise/protocol";
import { NonRetriableError } from "./errors.ts";
import type { PlannedOp } from "./step-tools.ts";

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

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * What a signal wait's stored result gives the function: the signal's event as the executor
 * stores it, or `{ signal, data }` as an operator's rerun may have written it. Anything else (a
 * step that was a `waitForEvent` before a deploy) is a NonRetriableError naming the step.
 */
export function receivedSignal(name: string, stored: unknown): ReceivedSignal | null {
  if (stored === null) return null;
  const shape = isObject(stored) && stored.name === SIGNAL_EVENT && isObject(stored.data) ? stored.data : stored;
  if (isObject(shape) && typeof shape.signal === "string") return { signal: shape.signal, data: shape.data ?? null };
  throw new NonRetriableError(`step.waitForSignal("${name}"): its stored result is not a signal: ${JSON.stringify(stored)?.slice(0, 200)}`);
}

/** What a callback wait's stored result gives the function, read as {@link receivedSignal} reads a signal's. */
export function receivedCallback(name: string, stored: unknown): ReceivedCallback | null {
  if (stored === null) return null;
  const shape = isObject(stored) && stored.name === CALLBACK_EVENT && isObject(stored.data) ? stored.data : stored;
  if (isObject(shape) && "body" in shape) return { body: shape.body, headers: isObject(shape.headers) ? (shape.headers as Record<string, string>) : {} };
  throw new NonRetriableError(`step.waitForCallback("${name}"): its stored result is not a callback's POST: ${JSON.stringify(stored)?.slice(0, 200)}`);
}

/** A callback's lifetime in ms, or a NonRetriableError naming the step. */
export function callbackTimeout(name: string, timeout: Duration | undefined): number {
  let ms: number;
  try {
    ms = toMs(timeout as Duration);
  } catch (error) {
    throw new NonRetriableError(`step.createCallback("${name}"): timeout: ${(error as Error).message}`);
  }
  if (!(ms >= 1 && ms <= MAX_CALLBACK_TIMEOUT_MS)) throw new NonRetriableError(`step.createCallback("${name}"): timeout must be between 1ms and 7d, not ${JSON.stringify(timeout)}`);
  return ms;
}

export function planCallbackWait(name: string, callback: CallbackUrl): PlannedOp {
  if (typeof callback?.id !== "string" || typeof callback.expiresAt !== "string") {
    throw new NonRetriableError(`step.waitForCallback("${name}"): pass the object step.createCallback resolved to, not ${JSON.stringify(callback)?.slice(0, 100)}`);
  }
  return { op: "wait-callback", callback: callback.id, timeoutAt: callback.expiresAt };
}

/** A new signal wait's op, or a NonRetriableError naming the step and what is wrong. */
export function planSignalWait(name: string, options: WaitForSignalOptions): PlannedOp {
  const signal = SignalNameSchema.safeParse(options?.signal);
  if (!signal.success) throw new NonRetriableError(`step.waitForSignal("${name}"): ${signal.error.issues[0]?.message ?? "signal is not valid"}`);
  const onConflict = options.onConflict === undefined ? undefined : SignalConflictSchema.safeParse(options.onConflict);
  if (onConflict && !onConflict.success) throw new NonRetriableError(`step.waitForSignal("${name}"): onConflict must be "fail" or "replace", not ${JSON.stringify(options.onConflict)}`);
  return {
    op: "wait-signal",
    signal: signal.data,
    timeoutAt: new Date(Date.now() + toMs(options.timeout)).toISOString(),
    ...(onConflict ? { onConflict: onConflict.data } : {}),
  };
}
