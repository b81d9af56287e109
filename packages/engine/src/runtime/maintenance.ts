/**
 * Keeping the queue and the record in step, on a timer (one executor at a time where it
 * matters, through the store's locks): re-add jobs a queue outside the record lost, repair live
 * runs left with no job (which only a bug or a lost write could cause, so each is logged), and
 * prune finished runs and old events past the retention age, in bounded batches.
 */
import { afterCommit, type EngineContext } from "../context.ts";
import { expectedJobs } from "../machine/progress.ts";
import { isTerminal } from "../records.ts";
import { UnitOfWork } from "../unit/unit.ts";

/** A run must have been live this long with no job before it counts as stranded. */
const STRANDED_AFTER_MS = 30_000;
const BATCH = 500;

export async function reconcileQueue(ctx: EngineContext): Promise<void> {
  const readded = await ctx.store.queue.reconcile();
  if (readded > 0) ctx.log.warn(`queue had lost ${readded} job(s); re-added them from the record`);
}

/** Gives each stranded run the jobs its state calls for; returns the IDs repaired. */
export async function repairStrandedRuns(ctx: EngineContext): Promise<string[]> {
  const repaired: string[] = [];
  for (const runId of await ctx.store.findStrandedRuns(STRANDED_AFTER_MS, 100)) {
    const outcome = await ctx.store.transaction(async (tx) => {
      const unit = new UnitOfWork(tx, ctx);
      const draft = await unit.load(runId);
      if (!draft || isTerminal(draft.run.status)) return null;
      const missing = expectedJobs(draft.state(draft.run.version));
      if (missing.length === 0) return null;
      // A job of a purpose the run already has is not written (one per purpose): what is queued is what was missing.
      for (const job of missing) draft.enqueue(job);
      return { outcome: await unit.commit(), functionId: draft.run.functionId };
    });
    if (!outcome) continue;
    await afterCommit(ctx, outcome.outcome);
    const queued = outcome.outcome.queued.filter((job) => job.runId === runId);
    if (queued.length > 0) {
      ctx.log.warn(`run ${runId} ${outcome.functionId} had no job to move it on; queued ${queued.map((j) => j.kind + (j.stepId ? ` of "${j.stepId}"` : "")).join(", ")}`);
      repaired.push(runId);
    }
  }
  return repaired;
}

/** Deletes what is older than `retentionMs`, a few batches per call so one call stays short. */
export async function pruneExpired(ctx: EngineContext, retentionMs: number): Promise<void> {
  let runs = 0;
  let events = 0;
  for (let batch = 0; batch < 4; batch++) {
    const pruned = await ctx.store.prune(retentionMs, BATCH);
    runs += pruned.runs;
    events += pruned.events;
    if (pruned.runs < BATCH && pruned.events < BATCH) break;
  }
  if (runs + events > 0) ctx.log.info(`pruned ${runs} finished run(s) and ${events} event(s) older than the retention age`);
}

/** Drops expired idempotency keys and spent rate limits, a few batches per round. */
export async function pruneFlowControl(ctx: EngineContext): Promise<void> {
  for (let batch = 0; batch < 4; batch++) if ((await ctx.store.pruneFlowControl(BATCH)) < BATCH) break;
}
