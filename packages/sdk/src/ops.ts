/**
 * Turning steps into ops: running a `step.run` now (→ `step-ran` / `step-failed`), or
 * describing a new step for the executor to handle (→ `step-planned`, `sleep`, `wait`...).
 */
import type { Context as TraceContext } from "@opentelemetry/api";
import { traceStep } from "./tracing.ts";
import { sha256Hex, type Op } from "@stepwise/protocol";
import { failureVerdict } from "./errors.ts";
import { toJson } from "./jsonify.ts";
import type { RunLogger } from "./logger.ts";
import type { FoundStep, NewStep } from "./replay.ts";
import type { StepRunContext } from "./step-tools.ts";

/**
 * Runs a `run` step's code once and reports its JSON result or its error (in a span of its own
 * under `trace`, the invocation's, when tracing is on). `attempt` is the step's, as the executor
 * counts it.
 */
export async function runStep(step: FoundStep, run: { id: string; attempt: number }, logger: RunLogger, trace?: TraceContext): Promise<Op> {
  const ref = { id: step.id, name: step.name, position: step.position };
  logger.goLive();
  try {
    if (!step.call.fn) throw new TypeError(`Step "${step.id}" has no code to run`);
    const fn = step.call.fn;
    const context: StepRunContext = { idempotencyKey: await stepIdempotencyKey(run.id, step.id), attempt: run.attempt };
    const value: unknown = await traceStep(trace, step, () => fn(context));
    const usage = step.call.usage?.(value);
    return { op: "step-ran", ...ref, output: toJson(value, `The result of step "${step.name}"`), ...(usage && { usage }) };
  } catch (error) {
    return { op: "step-failed", ...ref, ...failureVerdict(error), ...step.call.retry };
  }
}

/** See {@link StepRunContext.idempotencyKey}: a NUL cannot occur in either ID, so no two pairs give one text. */
export async function stepIdempotencyKey(runId: string, stepId: string): Promise<string> {
  return `stepwise-${await sha256Hex(`${runId}\u0000${stepId}`)}`;
}

/** The op that tells the executor about a step with nothing stored. */
export function newStepOp(step: NewStep): Op {
  return { ...step.planned, id: step.id, name: step.name, position: step.position, ...step.call.retry };
}
