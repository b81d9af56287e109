/** Errors the executor records on runs and steps, with names users can search for. */
import type { SerializedError } from "@stepwise/protocol";

export function serializedError(name: string, message: string): SerializedError {
  return { name, message };
}

export function toSerializedError(error: unknown): SerializedError {
  if (error instanceof Error) return { name: error.name, message: error.message, stack: error.stack };
  return { name: "Error", message: String(error) };
}

/** Thrown inside a transaction when this worker no longer holds the job's lease. */
export class LeaseLostError extends Error {
  override name = "LeaseLostError";
  constructor(jobId: string) {
    super(`Lease on job ${jobId} was lost (another executor took it over); this worker's result is dropped`);
  }
}

/**
 * The app answered that it could not start the invocation (it could not read the run's stored
 * outputs back): none of the function ran, so this is retried like a failure inside the
 * executor, with a backoff and a bound, not counted as an attempt of the function.
 */
export class InvocationNotStarted extends Error {
  override name = "InvocationNotStarted";
}

/**
 * The deployment a run is pinned to (the version it started on) may be gone: it answered 404 or
 * 410 (it is), or refused the connection or has no host (`refused`: it is once that lasts), so
 * nothing ran. The run moves to the app's current deployment (see `DeploymentRefusals`).
 */
export class DeploymentGone extends Error {
  override name = "DeploymentGone";
  constructor(
    message: string,
    readonly refused = false,
  ) {
    super(message);
  }
}

/**
 * The deployment a run is pinned to refuses connections, but not for long enough to call it
 * gone: it may be restarting. The job is tried there again in `retryInMs`; nothing ran, so it
 * is not an attempt of the function, nor a failure of the job.
 */
export class DeploymentUnreachable extends Error {
  override name = "DeploymentUnreachable";
  constructor(
    message: string,
    readonly retryInMs: number,
    /** Said already for this deployment a moment ago: not logged again. */
    readonly quiet = false,
  ) {
    super(message);
  }
}

/** Bad input to the executor's API: the message says what is wrong and how to fix it. */
export class InputError extends Error {
  override name = "InputError";
  constructor(
    message: string,
    readonly status: 400 | 403 | 404 | 409 | 410 | 413 = 400,
    /** A machine-readable reason, where a caller must tell this refusal from others of its status. */
    readonly code?: string,
  ) {
    super(message);
  }
}

const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "57P01", // admin_shutdown: the server is restarting
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now: starting up or shutting down
  "08000",
  "08001",
  "08003",
  "08004",
  "08006",
]);
// "Unexpected server response: 5xx": a WebSocket proxy in front of Postgres (Neon's, or the dev
// bridge) answering while the database behind it is down.
const UNAVAILABLE_MESSAGES =
  /connection terminated|connection refused|econnrefused|socket hang up|websocket|terminating connection|the database system is (starting|shutting)|fetch failed|network|unexpected server response: 5\d\d/i;

/**
 * Whether an error means a store is unreachable (restarting, network down) rather than a bug:
 * such failures are retried quietly with backoff and reported once per outage. Follows `cause`
 * and `error` (a WebSocket's ErrorEvent, which the Neon driver rejects with, is not an Error:
 * the error is inside it).
 */
export function isUnavailable(error: unknown): boolean {
  for (let current: unknown = error, depth = 0; current && depth < 5; depth++) {
    const { code, message, cause, error: inner } = current as { code?: unknown; message?: unknown; cause?: unknown; error?: unknown };
    if (typeof code === "string" && UNAVAILABLE_CODES.has(code)) return true;
    if (typeof message === "string" && UNAVAILABLE_MESSAGES.test(message)) return true;
    current = cause ?? inner;
  }
  return false;
}

/** What went wrong, in words: an Error's message, or that of an error-like object (an ErrorEvent), never "[object Object]". */
export function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  const message = (error as { message?: unknown } | null)?.message;
  if (typeof message === "string" && message) return message;
  return String(error);
}

/** Postgres data exceptions (22…) and program limits (54…): the value can never be stored as it is. */
export function isRefusedValue(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^(22|54)/.test(code);
}
