/**
 * One job, start to finish. An invocation reads the run outside any transaction, calls the
 * app (which may take long), then applies the answer in one transaction that also deletes
 * the job, checking the lease: if another worker took the job over meanwhile, this result
 * is dropped whole. Returns jobs leased straight to this worker (the run's next invocation).
 */
import { PROTOCOL_VERSION, type InvokeRequest, type StoredStep } from "@stepwise/protocol";
import { applyResponse, type Invocation } from "./apply.ts";
import { transact, type EngineContext, type Unit } from "./context.ts";
import { LeaseLostError, serializedError } from "./errors.ts";
import { finishRun } from "./finish.ts";
import { invokeApp, type InvokerOptions } from "./invoker.ts";
import { TERMINAL_RUN_STATUSES, type JobRecord, type StepRecord } from "./records.ts";
import type { RunSnapshot } from "./store.ts";
import { fireTimer } from "./timers.ts";

export interface JobRunner {
  ctx: EngineContext;
  invoker: InvokerOptions;
  owner: string;
  leaseMs: number;
  /**
   * The run's state as committed by the transaction that queued a continuation, keyed by the
   * continued job: the next invocation starts without reading it back. Safe because the
   * answer is applied under the run's lock, which re-checks what changed meanwhile.
   */
  prefetched: Map<string, RunState>;
  /** Continuations this worker holds: leased in the record only, never in the queue. */
  local: Set<string>;
}

/** What an invocation needs to know about its run. */
type RunState = RunSnapshot;

export async function runJob(runner: JobRunner, job: JobRecord): Promise<JobRecord[]> {
  try {
    return await runClaimedJob(runner, job);
  } catch (error) {
    runner.prefetched.delete(job.id);
    // A continuation is unknown to a queue elsewhere: hand it over, so it is retried there.
    if (runner.local.delete(job.id) && !runner.ctx.store.queue.authoritative) {
      const retryAt = new Date(Date.now() + 1_000);
      await runner.ctx.store.queue.publish([{ ...job, runAt: retryAt }]).catch(() => {});
    }
    throw error;
  }
}

async function runClaimedJob(runner: JobRunner, job: JobRecord): Promise<JobRecord[]> {
  const { store } = runner.ctx;
  // A queue outside the record may hand out a job whose completion already committed.
  const ours = runner.local.has(job.id);
  if (!ours && !store.queue.authoritative && !(await store.jobExists(job.id))) {
    await forget(runner, job.id);
    return [];
  }
  if (job.kind !== "invoke") return runTimer(runner, job);
  return runInvocation(runner, job);
}

/** A timer came due: settle its step, optimistically from a fresh read of the run. */
async function runTimer(runner: JobRunner, job: JobRecord): Promise<JobRecord[]> {
  await runner.ctx.registry.ensureFresh();
  const snapshot = await runner.ctx.store.loadRunSnapshot(job.runId);
  let after: RunState | undefined;
  const continued = await finishJob(
    runner,
    job,
    async (unit) => {
      const run = await fireTimer(unit, job);
      if (run && snapshot) after = { run, steps: await unit.steps(run.id), event: snapshot.event };
    },
    snapshot ?? undefined,
  );
  if (after) for (const next of continued) runner.prefetched.set(next.id, after);
  return continued;
}

/** Applies `fn` and deletes the job in one transaction; the lease must still be ours. */
async function finishJob(
  runner: JobRunner,
  job: JobRecord,
  fn: (unit: Unit) => Promise<void>,
  snapshot?: RunSnapshot,
): Promise<JobRecord[]> {
  const continuation = { owner: runner.owner, leaseMs: runner.leaseMs, runId: job.runId };
  const { unit } = await transact(
    runner.ctx,
    async (unit) => {
      if (!(await unit.tx.completeJob(job.id, runner.owner))) throw new LeaseLostError(job.id);
      await fn(unit);
    },
    continuation,
    snapshot,
  );
  // A continuation was never in the queue: nothing to forget there.
  if (!runner.local.delete(job.id)) await forget(runner, job.id);
  for (const next of unit.continued) runner.local.add(next.id);
  return unit.continued;
}

/** The record no longer has the job: the queue may drop it (a failure here only costs a no-op claim later). */
async function forget(runner: JobRunner, jobId: string): Promise<void> {
  await runner.ctx.store.queue.forget(jobId).catch((error: unknown) => {
    runner.ctx.log.warn(`could not drop job ${jobId} from the queue: ${error instanceof Error ? error.message : String(error)}`);
  });
}

async function runInvocation(runner: JobRunner, job: JobRecord): Promise<JobRecord[]> {
  const { ctx } = runner;
  // The state this worker just committed, or one read of run, steps and event.
  const known = runner.prefetched.get(job.id) ?? (await ctx.store.loadRunSnapshot(job.runId));
  runner.prefetched.delete(job.id);
  const run = known?.run;
  if (!known || !run || TERMINAL_RUN_STATUSES.includes(run.status)) return finishJob(runner, job, async () => {});
  const fn = await ctx.registry.getFunction(run.functionId);
  const app = fn && (await ctx.registry.getApp(fn.appId));
  if (!fn || !app) {
    const error = serializedError("FunctionNotFound", `Function ${run.functionId} is not registered with the executor`);
    return finishJob(runner, job, async (unit) => {
      const locked = await unit.tx.lockRun(run.id);
      if (locked) await finishRun(unit, locked, { status: "failed", error });
    });
  }
  const { steps, event } = known;
  const target = job.stepId ? steps.find((step) => step.id === job.stepId) : undefined;
  // A targeted job whose step was settled meanwhile (a duplicate after a crash) has nothing to do.
  if (job.stepId && (!target || (target.status !== "planned" && target.status !== "retrying"))) {
    return finishJob(runner, job, async () => {});
  }

  const request: InvokeRequest = {
    version: PROTOCOL_VERSION,
    run: { id: run.id, functionId: fn.localId, attempt: target ? target.attempts : run.attempt },
    event,
    events: [event],
    // The target is left out: to the SDK it is a new step, the one it must run.
    steps: steps.filter((step) => step !== target).map(toStoredStep),
    targetStep: target?.id,
  };
  const startedAt = new Date();
  const response = await invokeApp(runner.invoker, app.url, fn.localId, request);
  // Lookups inside the transaction read the cache: load what this answer will need first.
  await ctx.registry.ensureFresh();
  if (response.type === "ops") {
    for (const op of response.ops) if (op.op === "invoke") await ctx.registry.getFunction(op.functionId);
  }
  let after: RunState | undefined;
  const continued = await finishJob(runner, job, async (unit) => {
    const locked = await unit.tx.lockRun(run.id);
    if (!locked || TERMINAL_RUN_STATUSES.includes(locked.status)) return;
    const invocation: Invocation = { run: locked, fn, targetStep: target?.id, startedAt };
    await applyResponse(unit, invocation, response);
    after = { run: locked, steps: await unit.steps(run.id), event };
  }, known);
  if (after) for (const next of continued) runner.prefetched.set(next.id, after);
  return continued;
}

/** A stored step as the SDK sees it: done (output or error), or still pending. */
function toStoredStep(step: StepRecord): StoredStep {
  const base = { id: step.id, name: step.name, kind: step.kind, position: step.position };
  if (step.status === "completed") return { ...base, status: "completed", output: step.output ?? null };
  if (step.status === "failed") return { ...base, status: "failed", error: step.error };
  return { ...base, status: "pending" };
}
