/**
 * How a run moves on after any change to its steps: when nothing is in flight any more, the
 * function is invoked again (it replays and reaches its next step); otherwise the run's status
 * says what it is waiting for. Callers hold the run's lock.
 */
import { IN_FLIGHT_STEP_STATUSES, type RunRecord, type RunStatus, type StepRecord } from "./records.ts";
import type { Unit } from "./context.ts";

/** Status of a live run, from its steps in flight. */
export function liveStatus(steps: StepRecord[]): RunStatus {
  const inFlight = steps.filter((step) => IN_FLIGHT_STEP_STATUSES.includes(step.status));
  if (inFlight.length === 0) return "running";
  if (inFlight.some((step) => step.status === "planned" || step.status === "retrying")) return "running";
  if (inFlight.some((step) => step.status === "waiting" || step.status === "invoking")) return "waiting";
  return "sleeping";
}

/** After a step changed: queue the next invocation if nothing is in flight, and set the status. */
export async function continueRun(unit: Unit, run: RunRecord): Promise<void> {
  const steps = await unit.steps(run.id);
  const status = liveStatus(steps);
  const idle = !steps.some((step) => IN_FLIGHT_STEP_STATUSES.includes(step.status));
  if (idle) await unit.enqueue([{ kind: "invoke", runId: run.id }]);
  if (status !== run.status) {
    await unit.tx.updateRun(run.id, { status });
    run.status = status;
  }
}
