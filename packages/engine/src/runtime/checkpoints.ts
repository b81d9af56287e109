/**
 * Checkpoints: a `step.run` result committed in the middle of an invocation, so the function
 * goes on to its next step in the same invocation instead of answering and being invoked
 * again. The invocation carries a lease token (its job, the worker holding it, and which claim
 * of the job it is); a checkpoint commits only while that exact claim still holds the lease,
 * the run has not ended and the step is not stored yet, and it leaves at least half a lease. Anything else
 * is refused (409), and the app then stops running steps and answers the invocation as it
 * would have without checkpoints: the answer's usual path (fence, `canReplace`) decides.
 *
 * Any executor may take a checkpoint (the fence is in the store, not in the process that made
 * the invocation), so it works behind a load balancer and for the Worker executor alike.
 */
import { CheckpointRequestSchema, globalFunctionId, type CheckpointRefusal, type CheckpointRequest, issuesText } from "@stepwise/protocol";
import type { EngineContext } from "../context.ts";
import { InputError } from "../errors.ts";
import { formatBytes } from "../limits.ts";
import { formatDuration, runLabel } from "../log.ts";
import { storableBytes } from "../machine/steps.ts";
import type { JobRecord, StepRecord } from "../records.ts";

/** The lease an invocation's checkpoints prove: job, claim and holder. */
export interface LeaseProof {
  jobId: string;
  claims: number;
  owner: string;
}

/** The token an invocation of `job` carries. Not secret: only apps that verified the invocation's signature see it, and they sign what they send back. */
export function leaseToken(job: JobRecord, owner: string): string {
  return `${job.id}.${job.claims}.${owner}`;
}

export function parseLeaseToken(token: string): LeaseProof | null {
  // A job ID is a bigint: 18 digits always fit.
  const match = /^(\d{1,18})\.(\d{1,9})\.(.+)$/s.exec(token);
  if (!match) return null;
  return { jobId: match[1]!, claims: Number(match[2]), owner: match[3]! };
}

/** A checkpoint the invocation may not make; the app answers the invocation instead. */
export class CheckpointRefused extends Error {
  override name = "CheckpointRefused";
  constructor(
    readonly refused: CheckpointRefusal,
    message: string,
  ) {
    super(message);
  }
}

/** Reads a checkpoint request's body; a malformed one is a 400 that says what is wrong. */
export function parseCheckpoint(body: unknown): CheckpointRequest {
  const parsed = CheckpointRequestSchema.safeParse(body);
  if (!parsed.success) {
    const problems = issuesText(parsed.error.issues, "body");
    throw new InputError(`Not a Stepwise checkpoint: ${problems}`);
  }
  return parsed.data;
}

/** A committed checkpoint: what the run now holds, for the process running the invocation. */
export interface Checkpointed {
  jobId: string;
  step: StepRecord;
  bytes: number;
  version: number;
}

/** Commits `request` (signed by its app, already verified) or throws {@link CheckpointRefused}. */
export async function commitCheckpoint(ctx: EngineContext, leaseMs: number, request: CheckpointRequest): Promise<Checkpointed> {
  const lease = parseLeaseToken(request.token);
  if (!lease) throw new InputError("Not a Stepwise checkpoint: token is not a lease token the executor gave an invocation");
  const { run, step } = request;
  const functionId = globalFunctionId(run.appId, run.functionId);
  const endedAt = ctx.clock.now();
  return commitStep(ctx, leaseMs, { runId: run.id, functionId, lease, step, startedAt: endedAt - step.durationMs, endedAt }, "checkpoint");
}

/** One `step.run` result to commit under the lease of the invocation that ran it. */
export interface StepUnderLease {
  runId: string;
  /** The run's global function ID. */
  functionId: string;
  lease: LeaseProof;
  step: Pick<CheckpointRequest["step"], "id" | "name" | "position" | "output" | "usage">;
  startedAt: number;
  endedAt: number;
}

/**
 * Commits `write` as a checkpoint or throws {@link CheckpointRefused}. `from` says who asked: the
 * app (`checkpoint`) or the executor itself, for an answer that only ran the run's next step
 * (`answer`, see `answered-step.ts`): its refusals are not logged, since the answer then goes the
 * usual way, which says what became of it.
 */
export async function commitStep(ctx: EngineContext, leaseMs: number, write: StepUnderLease, from: "checkpoint" | "answer"): Promise<Checkpointed> {
  const { runId, functionId, lease, step } = write;
  const label = `${runLabel(runId, functionId)} step "${step.name}"`;
  // What the answer's path would refuse for good goes there, so the run gets the same error either way.
  const bytes = storableBytes(step.output);
  if (typeof bytes === "string") throw new CheckpointRefused("limit", `${label}: the result cannot be stored (${bytes})`);
  if (bytes > ctx.limits.maxStepOutputBytes) {
    throw new CheckpointRefused("limit", `${label}: the result is ${formatBytes(bytes)}, over the limit of ${formatBytes(ctx.limits.maxStepOutputBytes)}`);
  }
  if (step.position >= ctx.limits.maxStepsPerRun) throw new CheckpointRefused("limit", `${label}: the run reached its limit of ${ctx.limits.maxStepsPerRun} steps`);
  const record: StepRecord = {
    runId,
    id: step.id,
    name: step.name,
    kind: "run",
    position: step.position,
    status: "completed",
    output: step.output ?? null,
    ...(step.usage && { usage: step.usage }),
    attempts: 1,
    startedAt: new Date(write.startedAt),
    endedAt: new Date(write.endedAt),
  };
  const result = await ctx.store.checkpoint({
    runId,
    functionId,
    lease: { jobId: lease.jobId, owner: lease.owner, claims: lease.claims },
    leaseMs,
    step: record,
    bytes,
    maxRunStateBytes: ctx.limits.maxRunStateBytes,
  });
  if (!result.ok) {
    const refusal = new CheckpointRefused(result.refused, `${label}: checkpoint refused, ${REFUSALS[result.refused]}`);
    if (from === "checkpoint") ctx.log.info(refusal.message);
    throw refusal;
  }
  if (result.wasQueued) ctx.log.info(`${runLabel(runId, functionId)} started`);
  ctx.log.info(`${label} completed in ${formatDuration(write.endedAt - write.startedAt)}${from === "checkpoint" ? " (checkpoint)" : ""}`);
  return { jobId: lease.jobId, step: record, bytes, version: result.version };
}

/** Tells the executor's watchers (metrics, traces) of a committed step; `lastEnd`: when the run's step before it ended, if known. */
export function observeCommitted(ctx: EngineContext, committed: Checkpointed, functionId: string, lastEnd: number | undefined): void {
  const { step } = committed;
  ctx.observe({
    type: "step-ended",
    functionId,
    runId: step.runId,
    stepId: step.id,
    kind: step.kind,
    status: "completed",
    attempts: step.attempts,
    startedAt: step.startedAt,
    endedAt: step.endedAt!,
    ...(lastEnd !== undefined && { gapMs: Math.max(0, step.startedAt.getTime() - lastEnd) }),
  });
}

const REFUSALS: Record<CheckpointRefusal, string> = {
  "lease-lost": "the invocation no longer holds its lease (another took over, or the token is not this run's)",
  "run-ended": "the run has ended",
  "step-stored": "the step is already stored",
  limit: "the run's stored results would pass their limit",
};
