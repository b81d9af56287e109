/**
 * A run's end: completed, failed for good, or cancelled. Ending is final: the run's jobs and
 * matchers go (nothing will invoke or wake it again), steps still in flight are marked
 * cancelled, the parent learns the end when the run was started by `step.invoke`, and a
 * failure sends the event that triggers the function's `onFailure` companion.
 */
import { derivedEventId, FUNCTION_FAILED_EVENT, type SerializedError } from "@stepwise/protocol";
import { formatDuration, runLabel } from "../log.ts";
import { eventForApp, isInFlight, isTerminal } from "../records.ts";
import type { MachineEnv, RunDraft, RunEnding } from "./draft.ts";

export function finish(draft: RunDraft, env: MachineEnv, ending: RunEnding): void {
  const { run } = draft;
  if (isTerminal(run.status)) return;
  const endedAt = new Date(env.now);
  draft.patchRun({
    status: ending.status,
    output: ending.status === "completed" ? (ending.output ?? null) : undefined,
    error:
      ending.status === "failed"
        ? ending.error
        : ending.status === "cancelled"
          ? cancelledError(ending.reason)
          : ending.status === "skipped"
            ? { name: "RunSkipped", message: ending.reason }
            : undefined,
    endedAt,
    // An ended run is not paused: nothing is left to hold, and a function's resume looks for none.
    ...(run.paused && { paused: null }),
  });
  for (const step of draft.steps()) {
    if (isInFlight(step)) draft.saveStep({ ...step, status: "cancelled", endedAt });
  }
  draft.dirty = false;
  draft.dropJobs("all");
  draft.closeAllMatchers();

  const label = runLabel(run.id, run.functionId);
  const took = formatDuration(endedAt.getTime() - run.startedAt.getTime());
  if (ending.status === "completed") draft.info(`${label} completed in ${took}`);
  if (ending.status === "cancelled") draft.info(`${label} cancelled: ${ending.reason}`);
  if (ending.status === "skipped") draft.info(`${label} skipped: ${ending.reason}`);
  if (ending.status === "failed") {
    const where = ending.step ? ` at step "${ending.step}"` : "";
    draft.warn(`${label} failed${where} after ${took}: ${ending.error.name}: ${ending.error.message}`);
  }

  if (run.parentRunId && run.parentStepId) {
    draft.emit({ type: "settle-parent", parentRunId: run.parentRunId, stepId: run.parentStepId, childRunId: run.id, ending });
  }
  if (ending.status === "failed" && announcesFailure(draft, env)) {
    draft.emit({
      type: "send",
      events: [
        {
          id: derivedEventId(run.id, "failed"),
          name: FUNCTION_FAILED_EVENT,
          // appId: the failure goes to the failed run's own app only (see UnitOfWork.deliver).
          data: { functionId: run.functionId, appId: env.fn?.appId, runId: run.id, error: ending.error, event: eventForApp(draft.event) },
          ts: env.now,
        },
      ],
    });
  }
}

function cancelledError(reason: string): SerializedError {
  return { name: "RunCancelled", message: reason };
}

/**
 * Whether a failure triggers `onFailure` handlers: not for a run that was itself handling a
 * failure (an `onFailure` companion, or any function triggered by the failure event), or a
 * failing handler would set off an endless chain of failures.
 */
function announcesFailure(draft: RunDraft, env: MachineEnv): boolean {
  if (draft.event.name === FUNCTION_FAILED_EVENT) return false;
  return !env.fn?.config.onFailureOf;
}

/** A child run ended: its output (or error) becomes the result of the parent's invoke step. */
export function settleChild(draft: RunDraft, env: MachineEnv, stepId: string, childRunId: string, ending: RunEnding): void {
  if (isTerminal(draft.run.status)) return;
  const step = draft.step(stepId);
  if (!step || step.status !== "invoking") return;
  const endedAt = new Date(env.now);
  if (ending.status === "completed") {
    draft.saveStep({ ...step, status: "completed", output: ending.output ?? null, attempts: 1, endedAt });
  } else {
    const error =
      ending.status === "failed"
        ? { name: ending.error.name, message: `Invoked run ${childRunId} failed: ${ending.error.message}` }
        : { name: "RunCancelled", message: `Invoked run ${childRunId} was cancelled: ${ending.reason}` };
    draft.saveStep({ ...step, status: "failed", error, attempts: 1, endedAt });
  }
  draft.dropJobs({ kind: "invoke-timeout", stepId });
  draft.info(`${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}": invoked run ${childRunId} ${ending.status}`);
}
