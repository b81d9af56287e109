/**
 * What every part of the executor shares: the store, the registry, limits, the logger, and
 * `transact`, the one way state changes. A transaction collects the jobs it queued and the
 * lines it would log; both take effect only after it commits, so a rolled-back change never
 * wakes a worker or prints a transition that did not happen.
 */
import type { BackoffConfig } from "@stepwise/protocol";
import type { Limits } from "./limits.ts";
import type { Logger } from "./log.ts";
import type { JobRecord, NewJob, StepRecord } from "./records.ts";
import type { Registry } from "./registry.ts";
import type { RunSnapshot, Store, StoreTx } from "./store.ts";

export interface EngineContext {
  store: Store;
  registry: Registry;
  limits: Limits;
  log: Logger;
  /** Backoff used when a function sets none. */
  backoff: BackoffConfig;
  /** Called after commit with the jobs a transaction queued (wakes local workers). */
  onEnqueued(jobs: JobRecord[]): void;
}

/** Where a unit may hand its next job straight to the worker that runs it. */
export interface Continuation {
  owner: string;
  leaseMs: number;
  runId: string;
}

/** One transaction's worth of work, plus what happens after it commits. */
export class Unit {
  readonly queued: JobRecord[] = [];
  /** Jobs leased to the current worker in this transaction: it runs them next, no queue trip. */
  readonly continued: JobRecord[] = [];
  readonly lines: Array<[keyof Logger, string]> = [];
  /** Each run's steps as this transaction sees them: loaded once, kept current by `saveStep`. */
  private readonly stepCache = new Map<string, Map<string, StepRecord>>();

  constructor(
    readonly tx: StoreTx,
    readonly ctx: EngineContext,
    private readonly continuation?: Continuation,
  ) {}

  /** Queues jobs. A single due invoke of the continued run is leased to this worker instead. */
  async enqueue(jobs: NewJob[]): Promise<void> {
    const leasable = jobs.filter((job) => this.canContinue(job));
    const rest = jobs.filter((job) => !leasable.includes(job));
    if (leasable.length === 1 && this.continuation && this.continued.length === 0) {
      this.continued.push(...(await this.tx.enqueue(leasable, this.continuation)));
    } else {
      rest.push(...leasable);
    }
    if (rest.length > 0) this.queued.push(...(await this.tx.enqueue(rest)));
  }

  private canContinue(job: NewJob): boolean {
    const due = !job.runAt || job.runAt.getTime() <= Date.now();
    return job.kind === "invoke" && due && job.runId === this.continuation?.runId;
  }

  /** The run's steps in this transaction (read once, then from memory), by position. */
  async steps(runId: string): Promise<StepRecord[]> {
    let cached = this.stepCache.get(runId);
    if (!cached) {
      cached = new Map((await this.tx.listSteps(runId)).map((step) => [step.id, step]));
      this.stepCache.set(runId, cached);
    }
    return [...cached.values()].sort((a, b) => a.position - b.position);
  }

  /** Writes a step, and keeps this transaction's view of the run's steps current. */
  async saveStep(step: StepRecord): Promise<void> {
    await this.tx.saveStep(step);
    this.stepCache.get(step.runId)?.set(step.id, step);
  }

  info(line: string): void {
    this.lines.push(["info", line]);
  }

  warn(line: string): void {
    this.lines.push(["warn", line]);
  }
}

/**
 * Runs `fn` in a transaction (or, given the `snapshot` its worker just committed, first as
 * one optimistic statement that falls back to a transaction); after commit, prints its lines, publishes its jobs to the queue
 * and announces them to local workers. A failed publish is only logged: the jobs are in the
 * record, and the queue's reconcile finds them.
 */
export async function transact<T>(
  ctx: EngineContext,
  fn: (unit: Unit) => Promise<T>,
  continuation?: Continuation,
  snapshot?: RunSnapshot,
): Promise<{ result: T; unit: Unit }> {
  const work = async (tx: StoreTx) => {
    const unit = new Unit(tx, ctx, continuation);
    return { result: await fn(unit), unit };
  };
  const optimistic = snapshot && ctx.store.applyOptimistically ? await ctx.store.applyOptimistically(snapshot, work) : null;
  const outcome = optimistic?.result ?? (await ctx.store.transaction(work));
  const { unit } = outcome;
  for (const [level, line] of unit.lines) ctx.log[level](line);
  const queue = ctx.store.queue;
  // Continuations are not published: they are leased in the record to the worker that runs
  // them next, and a queue elsewhere learns of them only if that worker dies (reconcile).
  try {
    if (unit.queued.length > 0) await queue.publish(unit.queued);
  } catch (error) {
    ctx.log.warn(`could not publish ${unit.queued.length} job(s) to the queue (${describe(error)}); reconcile will re-add them`);
  }
  if (unit.queued.length > 0) ctx.onEnqueued(unit.queued);
  return outcome;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
