/**
 * Turning steps into ops: running a `step.run` now (→ `step-ran` / `step-failed`), or
 * describing a new step for the executor to handle (→ `step-planned`, `sleep`, `wait`...).
 */
import type { Context as TraceContext } from "@opentelemetry/api";
import { traceStep } from "./tracing.ts";
import type { Op } from "@stepwise/protocol";
import { failureVerdict } from "./errors.ts";
import { toJson } from "./jsonify.ts";
import type { RunLogger } from "./logger.ts";
import type { FoundStep, NewStep } from "./replay.ts";

/** Runs a `run` step's code once and reports its JSON result or its error. */
/** Runs a step's code (in a span of its own under `trace`, the invocation's, when tracing is on). */
export async function runStep(step: FoundStep, logger: RunLogger, trace?: TraceContext): Promise<Op> {
  const ref = { id: step.id, name: step.name, position: step.position };
  logger.goLive();
  try {
    if (!step.call.fn) throw new TypeError(`Step "${step.id}" has no code to run`);
    const fn = step.call.fn;
    const value: unknown = await traceStep(trace, step, fn);
    return { op: "step-ran", ...ref, output: toJson(value, `The result of step "${step.name}"`) };
  } catch (error) {
    return { op: "step-failed", ...ref, ...failureVerdict(error), ...step.call.retry };
  }
}

/** The op that tells the executor about a step with nothing stored. */
export function newStepOp(step: NewStep): Op {
  return { ...step.planned, id: step.id, name: step.name, position: step.position, ...step.call.retry };
}
