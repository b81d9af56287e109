/**
 * The errors users throw and catch, and how errors cross the wire: every error that leaves a
 * function or a step is serialized (name, message, stack) and comes back into later replays
 * as a {@link StepError} carrying the same name and message.
 */
import { NO_WAITING_RUN, toMs, type Duration, type SerializedError } from "@stepwise/protocol";

/**
 * Throw from a function or a step to fail it for good: no retry is attempted.
 * `cause` is kept for local debugging; only name and message are stored.
 */
export class NonRetriableError extends Error {
  override name = "NonRetriableError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * Throw from a function or a step to retry it at a given time (a `Date`) or after a delay
 * (milliseconds or `"30s"`, `"5m"`...), e.g. when an API answered 429 with `Retry-After`.
 */
export class RetryAfterError extends Error {
  override name = "RetryAfterError";
  /** When the retry should happen, fixed when the error is created. */
  readonly retryAt: Date;
  constructor(message: string, when: Date | Duration, options?: { cause?: unknown }) {
    super(message, options);
    this.retryAt = when instanceof Date ? new Date(when.getTime()) : new Date(Date.now() + toMs(when));
  }
}

/**
 * A step that failed for good (its retries are spent, or an invoked function failed), thrown
 * at the `await` of that step on every replay. `name` and `message` are the stored error's,
 * so `error.name === "PaymentDeclined"` works across invocations; test with `instanceof StepError`.
 * Letting it escape the function fails the run without another retry.
 */
export class StepError extends Error {
  /** The ID of the step that failed. */
  readonly stepId: string;
  constructor(stepId: string, error: SerializedError) {
    super(error.message);
    this.name = error.name;
    this.stepId = stepId;
    if (error.stack) this.stack = error.stack;
  }
}

/** One failing field of an event, as reported by its schema. */
export interface ValidationIssue {
  /** Dotted path from the event, e.g. `data.orderId`. */
  path: string;
  message: string;
}

/**
 * An event did not match its schema (in `send()` or `step.sendEvent()`). Nothing was sent.
 * It is a {@link NonRetriableError}: the same data would fail again on a retry.
 */
export class StepwiseValidationError extends NonRetriableError {
  override name = "StepwiseValidationError";
  constructor(
    /** The name of the invalid event. */
    readonly eventName: string,
    readonly issues: readonly ValidationIssue[],
  ) {
    const detail = issues.map((issue) => `${issue.path}: ${issue.message}`).join("; ");
    super(`Invalid event "${eventName}": ${detail}`);
  }
}

/** The executor's API answered with an error status (or could not be reached: `status` 0). */
export class StepwiseApiError extends Error {
  override name = "StepwiseApiError";
  constructor(
    /** The HTTP status, or 0 when the executor was unreachable. */
    readonly status: number,
    message: string,
    /** The executor's machine-readable reason, where it gave one (`code` of its answer). */
    readonly code?: string,
  ) {
    super(message);
  }
}

/**
 * `sendSignal` found no run waiting for the signal within the executor's grace period (HTTP
 * 404). Nothing was delivered or stored: send it again once a run waits, or check the name.
 */
export class SignalNotDeliveredError extends StepwiseApiError {
  override name = "SignalNotDeliveredError";
  constructor(
    /** The signal's name. */
    readonly signal: string,
    message: string,
  ) {
    super(404, message, NO_WAITING_RUN);
  }
}

/** Turns anything thrown into the wire shape. */
export function serializeError(error: unknown): SerializedError {
  if (error instanceof Error) {
    const serialized: SerializedError = { name: error.name, message: error.message };
    if (error.stack) serialized.stack = error.stack;
    return serialized;
  }
  return { name: "Error", message: typeof error === "string" ? error : safeString(error) };
}

/** Rebuilds an error from the wire shape, keeping its name and message. */
export function deserializeError(error: SerializedError): Error {
  const rebuilt = new Error(error.message);
  rebuilt.name = error.name;
  if (error.stack) rebuilt.stack = error.stack;
  return rebuilt;
}

/** What a failure means for retries: the fields an `error` answer or `step-failed` op carries. */
export interface FailureVerdict {
  error: SerializedError;
  retriable: boolean;
  retryAt?: string;
}

/**
 * Classifies a thrown error. A `StepError` reaching here means a step failed for good and the
 * function did not handle it, so retrying the function would only meet the same failure.
 */
export function failureVerdict(error: unknown): FailureVerdict {
  const verdict: FailureVerdict = { error: serializeError(error), retriable: true };
  if (error instanceof NonRetriableError || error instanceof StepError) verdict.retriable = false;
  if (error instanceof RetryAfterError) verdict.retryAt = error.retryAt.toISOString();
  return verdict;
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
