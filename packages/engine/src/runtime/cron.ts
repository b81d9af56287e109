/**
 * Cron triggers. Each pattern of a function has exactly one `cron` job queued, due at its next
 * tick (written at sync). The worker that claims it, in one transaction: takes the job (only
 * while it holds the lease), stores the tick's event under an ID derived from the function,
 * the pattern and the tick, starts the run, and queues the next tick. Two executors therefore
 * never start two runs for one tick: the lease lets one commit, and the event's ID would make
 * a second commit start nothing.
 *
 * Ticks missed while no executor ran: the queued tick fires once, late (its event says which
 * tick it was for), and the next one is the first tick after now. A day-long outage gives one
 * run, not a burst of them.
 */
import { CRON_EVENT, derivedEventId, nextCronTick, type CronEventData } from "@stepwise/protocol";
import { afterCommit, type EngineContext } from "../context.ts";
import { LeaseLostError } from "../errors.ts";
import { CRON_JOB_PREFIX, type CronTick, type FunctionRecord, type JobRecord } from "../records.ts";
import { UnitOfWork } from "../unit/unit.ts";

/** Failures of one tick inside the executor before it is skipped for the next one. */
const MAX_TICK_FAILURES = 5;

/** The tick after `after` of each cron trigger of `functions` (what a sync queues). */
export function firstTicks(functions: readonly FunctionRecord[], after: Date): CronTick[] {
  return functions.flatMap((fn) => ticksOf(fn, after));
}

function ticksOf(fn: FunctionRecord, after: Date): CronTick[] {
  const patterns = new Set(fn.config.triggers.flatMap((trigger) => (trigger.cron === undefined ? [] : [trigger.cron])));
  return [...patterns].flatMap((cron) => {
    const runAt = nextCronTick(cron, after);
    return runAt ? [{ functionId: fn.id, cron, runAt }] : [];
  });
}

/**
 * The ID of a tick's event: one per function, pattern and tick, so a tick starts one run. The
 * pattern is in it as a hash (FNV-1a), so the ID stays usable in a URL path (`/api/events/:id`).
 */
export function cronEventId(functionId: string, cron: string, tick: Date): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < cron.length; i++) hash = Math.imul(hash ^ cron.charCodeAt(i), 0x01000193) >>> 0;
  return derivedEventId(`cron:${functionId}`, hash.toString(16).padStart(8, "0"), tick.toISOString());
}

/**
 * Fires the tick `job` stands for, as the worker `owner` that claimed it. A pattern its
 * function no longer has (or a function gone) is dropped with its job.
 */
export async function runCronTick(ctx: EngineContext, job: JobRecord, owner: string): Promise<void> {
  const functionId = job.runId.slice(CRON_JOB_PREFIX.length);
  const cron = job.stepId ?? "";
  const hasPattern = (fn: FunctionRecord | undefined) => fn !== undefined && fn.config.triggers.some((trigger) => trigger.cron === cron);
  let fn = await ctx.registry.getFunction(functionId);
  // The cache may predate the sync that added the pattern: dropping the tick on its word would
  // end the chain for good, so ask the store before believing it.
  if (!hasPattern(fn)) {
    await ctx.registry.refresh();
    fn = await ctx.registry.getFunction(functionId);
  }
  const live = fn !== undefined && hasPattern(fn);
  const skip = job.failures >= MAX_TICK_FAILURES;
  const now = new Date(ctx.clock.now());
  let tick = job.runAt;
  const outcome = await ctx.store.transaction(async (tx) => {
    const unit = new UnitOfWork(tx, ctx);
    const done = await tx.completeJob({ jobId: job.id, owner });
    if (!done) throw new LeaseLostError(job.id);
    // The tick's time is when the job first came due: a job given back (a failure, a stop) is
    // due again later, but it is still that tick.
    tick = done.readyAt;
    let started: string | undefined;
    if (fn && live && !skip) {
      const data: CronEventData = { cron, scheduledAt: tick.toISOString() };
      const [stored] = await tx.insertEvents([{ id: cronEventId(functionId, cron, tick), name: CRON_EVENT, data, ts: tick.getTime() }]);
      if (stored) started = (await unit.startTriggered(fn, stored))?.run.id;
    }
    // Ticks missed while no executor ran are not made up for: the next is the first after now.
    const next = live ? nextCronTick(cron, now > tick ? now : tick) : null;
    const nextJob = next ? await tx.queueCronTick({ functionId, cron, runAt: next }) : null;
    const committed = await unit.commit();
    return { ...committed, started, next, queued: [...committed.queued, ...(nextJob ? [nextJob] : [])], deleted: [...committed.deleted, job.id] };
  });
  // The run's own line ("queued for event stepwise/cron") comes with the commit's lines.
  const late = now.getTime() - tick.getTime();
  if (skip) {
    ctx.log.error(`cron "${cron}" of ${functionId}: tick ${tick.toISOString()} skipped after ${job.failures} failed attempts (${job.lastError ?? "unknown cause"})`);
  } else if (!live) {
    ctx.log.warn(`cron "${cron}" of ${functionId}: no longer a trigger of the function (${fn ? "its pattern changed" : "the function is gone"}); its ticks stop`);
  } else if (outcome.started && late > 60_000) {
    ctx.log.warn(`cron "${cron}" of ${functionId}: tick ${tick.toISOString()} ran ${describeLate(late)} late (no executor was running); ticks missed meanwhile are skipped`);
  }
  if (outcome.next === null && live) ctx.log.warn(`cron "${cron}" of ${functionId}: no tick after ${now.toISOString()}; its ticks stop`);
  await afterCommit(ctx, outcome);
}

function describeLate(ms: number): string {
  return ms >= 3_600_000 ? `${(ms / 3_600_000).toFixed(1)} h` : `${Math.round(ms / 60_000)} min`;
}
