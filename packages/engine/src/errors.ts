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

/** Bad input to the executor's API: the message says what is wrong and how to fix it. */
export class InputError extends Error {
  override name = "InputError";
  constructor(
    message: string,
    readonly status: 400 | 404 | 413 = 400,
  ) {
    super(message);
  }
}
