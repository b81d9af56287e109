/**
 * Timers coming due: a sleep ends, a wait times out (resolving to null), an invoked child
 * takes longer than its timeout (the invoke step fails), a run passes its function's
 * `timeouts.finish` (it is cancelled). Each is a no-op when its step has moved on already
 * (the event arrived, the child finished, the run ended).
 */
import { serializedError } from "../errors.ts";
import { runLabel } from "../log.ts";
import { isTerminal, type JobRecord } from "../records.ts";
import type { MachineEnv, RunDraft } from "./draft.ts";
import { finish } from "./ending.ts";

export function fireTimer(draft: RunDraft, env: MachineEnv, job: Pick<JobRecord, "kind" | "stepId">): void {
  if (isTerminal(draft.run.status)) return;
  if (job.kind === "finish-timeout") {
    const limit = env.fn?.config.timeouts?.finish;
    return finish(draft, env, { status: "cancelled", reason: `timeouts.finish: the run did not finish within ${limit ?? "its function's timeout"} of its event` });
  }
  if (!job.stepId) return;
  const step = draft.step(job.stepId);
  if (!step) return;
  const label = `${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}"`;
  const endedAt = new Date(env.now);

  if (job.kind === "wake" && step.status === "sleeping") {
    draft.saveStep({ ...step, status: "completed", output: null, attempts: 1, endedAt });
    const late = step.wakeAt ? Math.max(0, endedAt.getTime() - step.wakeAt.getTime()) : 0;
    draft.info(`${label} woke up (${late}ms after its time)`);
  } else if (job.kind === "wait-timeout" && step.status === "waiting") {
    draft.closeMatcher(step.id);
    draft.saveStep({ ...step, status: "completed", output: null, attempts: 1, endedAt });
    draft.info(`${label} timed out waiting; resolving to null`);
  } else if (job.kind === "invoke-timeout" && step.status === "invoking") {
    const error = serializedError("InvokeTimeout", `step.invoke "${step.name}" timed out before the invoked run finished`);
    draft.saveStep({ ...step, status: "failed", error, attempts: 1, endedAt });
    draft.warn(`${label} timed out waiting for the invoked run`);
  }
}
