/**
 * An answer that only ran the run's next step, committed as a checkpoint of the same job. An
 * app without checkpoints answers each invocation with the one `step.run` it reached, and so
 * does a checkpointing one whose checkpoint failed, or whose invocation spent its `maxRuntime`
 * with a step. Applied the usual way, that answer deletes the job and writes the run's next
 * invocation as a new one, through the general statement for any change. Here it is the step
 * and the run's version instead, fenced by the invocation's own lease exactly as the app's
 * checkpoint would be, and the same job invokes the app again. The app sees no difference: one
 * invocation per step, each replaying the steps before it.
 *
 * Only the plainest answer goes this way: an invocation of the whole function (not one step's),
 * by a job that has not failed, for a live run with nothing else in flight, answering one result
 * of a step the run does not have yet. Anything else, and any refusal (the lease lost, the run
 * ended or paused, a limit reached, the step stored already), goes the usual way, which decides
 * and says so.
 */
import type { InvokeResponse } from "@stepwise/protocol";
import type { EngineContext } from "../context.ts";
import type { GoingOn } from "./lanes.ts";
import { isInFlight, isTerminal, type JobRecord, type RunState } from "../records.ts";
import { CheckpointRefused, commitStep, observeCommitted } from "./checkpoints.ts";

/** The invocation the answer came from. */
export interface AnsweredInvocation {
  job: JobRecord;
  /** This worker, holding the job's lease. */
  owner: string;
  leaseMs: number;
  /** The run as the invocation was sent, moved on by the checkpoints committed here meanwhile. */
  snapshot: RunState;
  /** When the executor sent it. */
  startedAt: number;
  /** The lane's leave to go on with the run itself (see `JobHandling.goOn`). */
  goOn?: () => GoingOn | undefined;
}

/**
 * What became of the answer: `usual`, it goes the usual way; else it is committed, and the app
 * is invoked again from `from` (undefined: something else moved the run meanwhile, read it).
 */
export type AnsweredStep = { usual: true } | { usual: false; from: RunState | undefined };

const USUAL: AnsweredStep = { usual: true };

/** Commits `response`'s step under the invocation's lease when it is the plainest answer (above). */
export async function commitAnsweredStep(ctx: EngineContext, inv: AnsweredInvocation, response: InvokeResponse): Promise<AnsweredStep> {
  const { job, snapshot } = inv;
  // A job that failed in the executor before ends here, as it did before this path: its
  // failures count toward giving its run up (`MAX_JOB_FAILURES`), and they are one step's
  // failures in a row only while each step's answer starts a fresh job.
  if (job.failures > 0) return USUAL;
  if (job.stepId !== undefined || response.type !== "ops" || response.ops.length !== 1) return USUAL;
  const [op] = response.ops;
  const { run, steps } = snapshot;
  if (op!.op !== "step-ran" || run.paused || isTerminal(run.status)) return USUAL;
  let lastEnd: number | undefined;
  for (const step of steps) {
    if (step.id === op!.id || isInFlight(step)) return USUAL;
    if (step.endedAt && (lastEnd === undefined || step.endedAt.getTime() > lastEnd)) lastEnd = step.endedAt.getTime();
  }
  // Asked last, and given back if the step is not committed: a leave counts against a drain's budget.
  const going = inv.goOn?.();
  if (!going) return USUAL;
  const endedAt = ctx.clock.now();
  let committed;
  try {
    const lease = { jobId: job.id, claims: job.claims, owner: inv.owner };
    // It started when it was reached: once the invocation was sent, and after the step before it.
    const startedAt = Math.min(endedAt, Math.max(inv.startedAt, lastEnd ?? 0));
    committed = await commitStep(ctx, inv.leaseMs, { runId: run.id, functionId: run.functionId, lease, step: op!, startedAt, endedAt }, "answer");
  } catch (error) {
    going.giveBack();
    if (error instanceof CheckpointRefused) return USUAL;
    throw error;
  }
  observeCommitted(ctx, committed, run.functionId, lastEnd);
  // Anything else committed to the run meanwhile (an event, another executor's checkpoint of
  // this invocation) is missing from the snapshot: the next invocation reads the run afresh.
  if (committed.version !== run.version + 1) return { usual: false, from: undefined };
  const from: RunState = {
    ...snapshot,
    run: { ...run, version: committed.version, stateBytes: run.stateBytes + committed.bytes, status: "running" },
    steps: [...steps, committed.step],
  };
  return { usual: false, from };
}
