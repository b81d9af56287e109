/**
 * Pausing a run and resuming it (`POST /api/runs/:id/pause`, `/resume`; a paused function's
 * runs start held). A paused run keeps everything it has (steps, waits, cancelOn) but has no
 * job, so nothing invokes it and its timers do not fire, on any executor; an event its wait
 * matches is still taken, and a cancel still ends it. Resuming queues what its state calls for,
 * as repairing a run that lost its jobs does: a sleep whose time passed wakes at once, a wait
 * whose timeout passed times out, and the function's `timeouts.finish` counts from the start.
 */
import { toMs } from "@stepwise/protocol";
import { runLabel } from "../log.ts";
import type { RunPause } from "../records.ts";
import type { MachineEnv, RunDraft } from "./draft.ts";
import { expectedJobs } from "./progress.ts";

export function pause(draft: RunDraft, pause: RunPause): void {
  const current = draft.run.paused;
  // An operator's pause of a run its function's pause holds makes it the operator's: the function's resume leaves it paused.
  if (current && !(current.by === "function" && pause.by === "operator")) return;
  draft.pause(pause);
  draft.info(`${runLabel(draft.run.id, draft.run.functionId)} paused by ${pause.by === "operator" ? "an operator" : "its function's pause"}`);
}

export function resume(draft: RunDraft, env: MachineEnv): void {
  if (!draft.run.paused) return;
  draft.patchRun({ paused: null });
  for (const job of expectedJobs(draft.state(draft.run.version))) draft.enqueue(job);
  const finish = env.fn?.config.timeouts?.finish;
  if (finish !== undefined) draft.enqueue({ kind: "finish-timeout", runAt: new Date(draft.run.startedAt.getTime() + toMs(finish)) });
  draft.info(`${runLabel(draft.run.id, draft.run.functionId)} resumed`);
}
