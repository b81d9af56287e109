/**
 * `onFailure` runs as a companion function of its own (`<id>-failure`), triggered by the
 * executor's `stepwise/function.failed` event for that function only. So the failure handler
 * is itself durable: it has steps, retries and a run of its own.
 */
import {
  EventSchema,
  FUNCTION_FAILED_EVENT,
  SerializedErrorSchema,
  globalFunctionId,
} from "@stepwise/protocol";
import { z } from "zod";
import { NonRetriableError, deserializeError } from "./errors.ts";
import type { FunctionContext, HandlerEvent, RunnableFunction, StepwiseFunction } from "./function.ts";
import type { EventSchemas } from "./types.ts";

/** The `data` of a `stepwise/function.failed` event, as the executor sends it. */
const FunctionFailedDataSchema = z.object({
  functionId: z.string(),
  runId: z.string(),
  error: SerializedErrorSchema,
  event: EventSchema,
});

/** The ID of the companion that runs `fnId`'s `onFailure`. */
export function failureFunctionId(fnId: string): string {
  return `${fnId}-failure`;
}

/** The companion function of `fn`, or undefined when it has no `onFailure`. */
export function failureCompanion(fn: StepwiseFunction): RunnableFunction | undefined {
  const onFailure = fn.onFailure;
  if (!onFailure) return undefined;
  const failedFunctionId = globalFunctionId(fn.appId, fn.id);
  return {
    appId: fn.appId,
    schemas: fn.schemas,
    log: fn.log,
    checkpointBudgetMs: fn.checkpointBudgetMs,
    config: {
      id: failureFunctionId(fn.id),
      triggers: [{ event: FUNCTION_FAILED_EVENT, if: `event.data.functionId == ${JSON.stringify(failedFunctionId)}` }],
      retries: fn.config.retries,
      onFailureOf: fn.id,
    },
    handler: (context: FunctionContext<EventSchemas, string>) => {
      const parsed = FunctionFailedDataSchema.safeParse(context.event.data);
      if (!parsed.success) {
        throw new NonRetriableError(`${FUNCTION_FAILED_EVENT} event for "${fn.id}" is malformed: ${parsed.error.message}`);
      }
      const { error, event, runId } = parsed.data;
      return onFailure({
        error: deserializeError(error),
        event: event as HandlerEvent<EventSchemas, string>,
        runId,
        step: context.step,
        attempt: context.attempt,
        logger: context.logger,
      });
    },
  };
}
