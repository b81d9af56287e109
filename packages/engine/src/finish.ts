/**
 * A run's end: completed, failed for good, or cancelled. Ending closes its matchers, settles
 * the parent step when the run was started by `step.invoke`, and, on failure, sends the event
 * that triggers the function's `onFailure` companion. Callers hold the run's lock.
 */
import { FUNCTION_FAILED_EVENT, type SerializedError } from "@stepwise/protocol";
import type { Unit } from "./context.ts";
import { ingestInTransaction } from "./ingest.ts";
import { formatDuration, runLabel } from "./log.ts";
import { continueRun } from "./progress.ts";
import { IN_FLIGHT_STEP_STATUSES, TERMINAL_RUN_STATUSES, type RunRecord } from "./records.ts";

export type RunEnding =
  | { status: "completed"; output: unknown }
  | { status: "failed"; error: SerializedError; step?: string }
  | { status: "cancelled"; reason: string };

export async function finishRun(unit: Unit, run: RunRecord, ending: RunEnding): Promise<void> {
  if (TERMINAL_RUN_STATUSES.includes(run.status)) return;
  const endedAt = new Date();
  const error =
    ending.status === "failed"
      ? ending.error
      : ending.status === "cancelled"
        ? { name: "RunCancelled", message: ending.reason }
        : undefined;
  await unit.tx.updateRun(run.id, {
    status: ending.status,
    output: ending.status === "completed" ? (ending.output ?? null) : undefined,
    error,
    endedAt,
  });
  run.status = ending.status;
  await unit.tx.deleteMatchers(run.id);
  if (ending.status === "cancelled") await cancelInFlightSteps(unit, run.id);

  const label = runLabel(run.id, run.functionId);
  const took = formatDuration(endedAt.getTime() - run.startedAt.getTime());
  if (ending.status === "completed") unit.info(`${label} completed in ${took}`);
  if (ending.status === "cancelled") unit.info(`${label} cancelled: ${ending.reason}`);
  if (ending.status === "failed") {
    const where = ending.step ? ` at step "${ending.step}"` : "";
    unit.warn(`${label} failed${where} after ${took}: ${ending.error.name}: ${ending.error.message}`);
  }

  if (run.parentRunId && run.parentStepId) await settleParent(unit, run, ending);
  if (ending.status === "failed") await announceFailure(unit, run, ending.error);
}

async function cancelInFlightSteps(unit: Unit, runId: string): Promise<void> {
  for (const step of await unit.steps(runId)) {
    if (IN_FLIGHT_STEP_STATUSES.includes(step.status)) {
      await unit.saveStep({ ...step, status: "cancelled", endedAt: new Date() });
    }
  }
}

/** A child run ended: its output (or error) becomes the result of the parent's invoke step. */
async function settleParent(unit: Unit, child: RunRecord, ending: RunEnding): Promise<void> {
  const parent = await unit.tx.lockRun(child.parentRunId!);
  if (!parent || TERMINAL_RUN_STATUSES.includes(parent.status)) return;
  const step = (await unit.steps(parent.id)).find((s) => s.id === child.parentStepId);
  if (!step || step.status !== "invoking") return;
  const endedAt = new Date();
  if (ending.status === "completed") {
    await unit.saveStep({ ...step, status: "completed", output: ending.output ?? null, attempts: 1, endedAt });
  } else {
    const error =
      ending.status === "failed"
        ? { name: ending.error.name, message: `Invoked run ${child.id} failed: ${ending.error.message}` }
        : { name: "RunCancelled", message: `Invoked run ${child.id} was cancelled: ${ending.reason}` };
    await unit.saveStep({ ...step, status: "failed", error, attempts: 1, endedAt });
  }
  await continueRun(unit, parent);
}

/** Sends `stepwise/function.failed`, which triggers the function's `onFailure` companion. */
async function announceFailure(unit: Unit, run: RunRecord, error: SerializedError): Promise<void> {
  const fn = unit.ctx.registry.cachedFunction(run.functionId);
  if (!fn || fn.config.onFailureOf) return; // a failing onFailure handler does not report itself
  const event = await unit.tx.getEvent(run.eventId);
  await ingestInTransaction(unit, [
    {
      id: `${run.id}:failed`,
      name: FUNCTION_FAILED_EVENT,
      data: { functionId: run.functionId, runId: run.id, error, event },
      ts: Date.now(),
    },
  ]);
}
