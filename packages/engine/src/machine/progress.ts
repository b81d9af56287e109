/**
 * How a live run moves on after its steps changed: when nothing is in flight any more, the
 * function is invoked again (it replays and reaches its next step); otherwise the run's status
 * says what it waits for. Worked out once per change, after every transition of the change,
 * so a run never gets two invocations for one change (two chains of invocations would run
 * every later step twice).
 */
import { isInFlight, isTerminal, type NewJob, type RunState, type RunStatus, type StepRecord } from "../records.ts";
import type { RunDraft } from "./draft.ts";

/** Status of a live run, from its steps in flight. */
export function liveStatus(steps: readonly StepRecord[]): RunStatus {
  const inFlight = steps.filter(isInFlight);
  if (inFlight.length === 0) return "running";
  if (inFlight.some((step) => step.status === "planned" || step.status === "retrying")) return "running";
  if (inFlight.some((step) => step.status === "waiting" || step.status === "invoking")) return "waiting";
  return "sleeping";
}

/** Sets the run's status and queues its next invocation if nothing is in flight. No-op unless a step changed. */
export function settle(draft: RunDraft): void {
  if (!draft.dirty || isTerminal(draft.run.status)) return;
  draft.dirty = false;
  const steps = draft.steps();
  if (!steps.some(isInFlight) && !draft.invokeQueued) draft.enqueue({ kind: "invoke" });
  const status = liveStatus(steps);
  if (status !== draft.run.status) draft.patchRun({ status });
}

/**
 * The jobs a run in this state must have, so that something will move it on: one per step in
 * flight (its branch, retry or timer), or one invocation when nothing is in flight. An invoke
 * step without a timeout has none: the child's end settles it. Used to repair a stranded run
 * and, in the simulation, to check that no run is stuck.
 */
export function expectedJobs(state: RunState): Array<Omit<NewJob, "runId">> {
  if (isTerminal(state.run.status)) return [];
  const jobs: Array<Omit<NewJob, "runId">> = [];
  for (const step of state.steps) {
    const at = step.wakeAt ? { runAt: step.wakeAt } : {};
    if (step.status === "planned") jobs.push({ kind: "invoke", stepId: step.id });
    if (step.status === "retrying") jobs.push({ kind: "invoke", stepId: step.id, ...at });
    if (step.status === "sleeping") jobs.push({ kind: "wake", stepId: step.id, ...at });
    if (step.status === "waiting") jobs.push({ kind: "wait-timeout", stepId: step.id, ...at });
    if (step.status === "invoking" && step.wakeAt) jobs.push({ kind: "invoke-timeout", stepId: step.id, ...at });
  }
  if (!state.steps.some(isInFlight)) jobs.push({ kind: "invoke" });
  return jobs;
}
