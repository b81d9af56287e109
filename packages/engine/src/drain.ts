/**
 * Work the queue for a bounded time, then return: the executor where no process stays up
 * (a Cloudflare Worker's request, a Durable Object alarm, a cron trigger, a Lambda). It claims
 * due jobs and runs them with the same job runner as the long-lived {@link Worker} loop, follows
 * continuations (a run's next invocation) at once, and stops when nothing is due or the budget
 * is spent. The answer says when the next job is due, so the caller can schedule itself then.
 *
 * The budget is soft: a job that started runs to its end (an invocation cannot be cut short
 * without losing its answer); no job starts after the budget ran out, and a continuation not
 * started is handed back to the queue, due at once, for the next drain or another executor.
 */
import { isUnavailable } from "./errors.ts";
import { runJob, type JobRunner } from "./jobs.ts";
import type { JobRecord } from "./records.ts";

export interface DrainOptions {
  /** Stop starting jobs after this many milliseconds. */
  budgetMs: number;
  /** Stop after starting this many jobs (continuations included). Default: no limit. */
  maxJobs?: number;
  /** Jobs run at once (default 8): parallel branches and unrelated runs progress together. */
  concurrency?: number;
}

export interface DrainResult {
  /** Jobs that ran to their end (applied, or dropped as already done). */
  ran: number;
  /** Jobs that failed in the executor and were given back for a retry. */
  failed: number;
  /** Whether it stopped for the budget or `maxJobs` rather than for lack of due work. */
  stoppedEarly: boolean;
  /** When the earliest job not leased is due (now or in the past: due already), or null when none is queued. */
  nextDueAt: Date | null;
}

export async function drain(runner: JobRunner, options: DrainOptions): Promise<DrainResult> {
  const { ctx, owner, leaseMs } = runner;
  const queue = ctx.store.queue;
  const deadline = Date.now() + options.budgetMs;
  const maxJobs = options.maxJobs ?? Infinity;
  const lanes = Math.max(1, Math.min(options.concurrency ?? 8, maxJobs));
  const active = new Map<string, JobRecord>();
  let started = 0;
  let ran = 0;
  let failed = 0;
  let stoppedEarly = false;
  /** An unreachable store: every lane stops, and the drain rethrows it once they have. */
  let outage: unknown;
  const outOfBudget = () => {
    if (outage !== undefined) return true;
    const out = Date.now() >= deadline || started >= maxJobs;
    if (out) stoppedEarly = true;
    return out;
  };

  // A job may run longer than a third of its lease (a slow app): keep the leases alive.
  const heartbeat = setInterval(() => void extendLeases(runner, active), Math.max(100, leaseMs / 3));

  const lane = async (): Promise<void> => {
    const next: JobRecord[] = [];
    for (;;) {
      let job = next.shift();
      if (outOfBudget()) {
        if (job) await Promise.all([job, ...next].map((held) => handBack(runner, held)));
        return;
      }
      // Counted before the claim's await, so lanes claiming together never pass maxJobs.
      started++;
      if (!job) {
        // One at a time per lane: a lane never holds a lease it is not about to use.
        try {
          [job] = await queue.claim(owner, 1, leaseMs);
        } catch (error) {
          outage ??= error;
        }
        if (!job) {
          started--;
          return;
        }
      }
      active.set(job.id, job);
      try {
        next.push(...(await runJob(runner, job)));
        ran++;
      } catch (error) {
        failed++;
        if (!isUnavailable(error)) {
          const cause = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
          ctx.log.warn(`job ${job.id} (${job.kind} of run ${job.runId}) failed in the executor: ${cause}; it will be retried`);
        }
        // The same backoff as the long-lived worker, so a failing job does not spin.
        const retryAt = new Date(Date.now() + Math.min(30_000, 500 * 2 ** Math.min(job.claims, 6)));
        await queue.release(job.id, owner, retryAt).catch(() => {});
        // An unreachable store will fail the next job too: stop, the caller tries again later.
        if (isUnavailable(error)) outage ??= error;
      } finally {
        active.delete(job.id);
      }
    }
  };

  try {
    await Promise.all(Array.from({ length: lanes }, lane));
  } finally {
    clearInterval(heartbeat);
  }
  if (outage !== undefined) throw outage;
  return { ran, failed, stoppedEarly, nextDueAt: await queue.nextDueAt() };
}

/**
 * A continuation this drain will not start: make it claimable at once. It is leased in the
 * record only, so with the queue in Postgres releasing the lease is enough; a queue elsewhere
 * (Redis) has never heard of it and is told now.
 */
async function handBack(runner: JobRunner, job: JobRecord): Promise<void> {
  runner.prefetched.delete(job.id);
  runner.local.delete(job.id);
  const queue = runner.ctx.store.queue;
  const now = new Date();
  if (queue.authoritative) await queue.release(job.id, runner.owner, now);
  else await queue.publish([{ ...job, runAt: now }]);
}

async function extendLeases(runner: JobRunner, active: Map<string, JobRecord>): Promise<void> {
  if (active.size === 0) return;
  try {
    const ids = [...active.keys()];
    await runner.ctx.store.queue.extendLeases(ids, runner.owner, runner.leaseMs);
    // Continuations are leased in the record; a queue elsewhere cannot extend those.
    const local = ids.filter((id) => runner.local.has(id));
    if (local.length > 0 && !runner.ctx.store.queue.authoritative) {
      await runner.ctx.store.extendRecordLeases(local, runner.owner, runner.leaseMs);
    }
  } catch (error) {
    runner.ctx.log.warn(`could not extend job leases: ${error instanceof Error ? error.message : String(error)}`);
  }
}
