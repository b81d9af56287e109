/**
 * Timers coming due: a sleep ends, a wait times out (resolving to null), an invoked child
 * takes longer than its timeout (the invoke step fails). Each is a no-op when the step has
 * moved on already (the event arrived, the child finished, the run ended).
 */
import type { Unit } from "./context.ts";
import { serializedError } from "./errors.ts";
import { runLabel } from "./log.ts";
import { continueRun } from "./progress.ts";
import { TERMINAL_RUN_STATUSES, type JobRecord, type RunRecord } from "./records.ts";

/** Settles the timer's step if it is still waiting for it; returns the run when it moved on. */
export async function fireTimer(unit: Unit, job: JobRecord): Promise<RunRecord | null> {
  const run = await unit.tx.lockRun(job.runId);
  if (!run || TERMINAL_RUN_STATUSES.includes(run.status)) return null;
  const step = (await unit.steps(run.id)).find((s) => s.id === job.stepId);
  if (!step) return null;
  const label = `${runLabel(run.id, run.functionId)} step "${step.name}"`;
  const endedAt = new Date();

  if (job.kind === "wake" && step.status === "sleeping") {
    await unit.saveStep({ ...step, status: "completed", output: null, attempts: 1, endedAt });
    const late = step.wakeAt ? endedAt.getTime() - step.wakeAt.getTime() : 0;
    unit.info(`${label} woke up (${late}ms after its time)`);
  } else if (job.kind === "wait-timeout" && step.status === "waiting") {
    await unit.tx.deleteMatcher(run.id, step.id);
    await unit.saveStep({ ...step, status: "completed", output: null, attempts: 1, endedAt });
    unit.info(`${label} timed out waiting; resolving to null`);
  } else if (job.kind === "invoke-timeout" && step.status === "invoking") {
    const error = serializedError("InvokeTimeout", `step.invoke "${step.name}" timed out before the invoked run finished`);
    await unit.saveStep({ ...step, status: "failed", error, attempts: 1, endedAt });
    unit.warn(`${label} timed out waiting for the invoked run`);
  } else {
    return null;
  }
  await continueRun(unit, run);
  return run;
}
