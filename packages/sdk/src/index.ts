/**
 * `@stepwise/sdk`: write durable functions from named steps.
 *
 * The client and errors live here; `serve()` comes from the adapter of your framework:
 * `@stepwise/sdk/hono`, `@stepwise/sdk/fetch` (Workers, Deno, Bun) or `@stepwise/sdk/node`.
 */
export { Stepwise, type StepwiseOptions, type StreamAccess } from "./client.ts";
export {
  NonRetriableError,
  RetryAfterError,
  SignalNotDeliveredError,
  StepError,
  StepwiseApiError,
  StepwiseValidationError,
  type ValidationIssue,
} from "./errors.ts";
export {
  StepwiseFunction,
  type AnyStepwiseFunction,
  type CronEvent,
  type FailureContext,
  type FunctionContext,
  type FunctionOptions,
  type FunctionOutput,
  type HandlerEvent,
  type InvokeData,
} from "./function.ts";
export type { Jsonify } from "./jsonify.ts";
export type { InvokeOptions, StepRunContext, StepRunOptions, StepTools, WaitForEventOptions } from "./step-tools.ts";
export type { CallbackUrl, ReceivedCallback, ReceivedSignal, WaitForSignalOptions } from "./step-answers.ts";
export type { AiInferOptions, AiProvider, AiTools, StepFetchInit } from "./step-calls.ts";
export type { RunMessage, SignalSent } from "@stepwise/protocol";
export type { Publish } from "./publisher.ts";
export type { EventData, EventName, EventSchemas, Logger, SendEventPayload, SendResult, TypedEvent } from "./types.ts";
export type { ServeOptions } from "./serve.ts";
export type { ConcurrencyLimit } from "@stepwise/protocol";
export { DEFAULT_MAX_RUNTIME_MS, type CheckpointingOptions, type CheckpointingSetting } from "./checkpointing.ts";
