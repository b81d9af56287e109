/**
 * The claim loop. Leases due jobs up to `concurrency`, runs them, and keeps their leases alive
 * with a heartbeat at a third of the lease time; a job whose worker died is claimed again once
 * its lease runs out. Between claims it sleeps until the next job is due, the poll interval
 * passes, or `notify()` says a job was just queued (so a step follows a step at once).
 */
import { isUnavailable } from "./errors.ts";
import type { Logger } from "./log.ts";
import type { JobRecord } from "./records.ts";
import type { Queue } from "./store.ts";

export interface WorkerOptions {
  queue: Queue;
  owner: string;
  concurrency: number;
  leaseMs: number;
  /** Longest sleep between claims when nothing is due (other executors may queue work). */
  pollMs: number;
  log: Logger;
  /** Runs one job; returns jobs already leased to this worker, to run next. */
  handle(job: JobRecord): Promise<JobRecord[]>;
  /** Whether a job is a continuation: leased in the record, not in the queue. */
  isLocal?(job: JobRecord): boolean;
  /** Extends the record's leases of continuations (when the queue lives elsewhere). */
  extendRecordLeases?(jobIds: string[], owner: string, leaseMs: number): Promise<void>;
}

export class Worker {
  private readonly active = new Map<string, JobRecord>();
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wake: (() => void) | null = null;
  private wakeAt = Infinity;
  /** A job was queued while the loop was not idle: the next idle returns at once. */
  private nudged = false;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  /** Consecutive failures caused by an unreachable store, and when the streak began. */
  private failures = 0;
  private outageSince = 0;
  private pausedUntil = 0;

  constructor(private readonly options: WorkerOptions) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.heartbeat = setInterval(() => void this.extendLeases(), Math.max(100, this.options.leaseMs / 3));
    this.loopDone = this.loop();
  }

  /** Stops claiming, waits up to `graceMs` for running jobs, and gives back the rest. */
  async stop(graceMs = 10_000): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loopDone;
    const deadline = Date.now() + graceMs;
    while (this.active.size > 0 && Date.now() < deadline) await delay(20);
    clearInterval(this.heartbeat);
    for (const job of this.active.values()) {
      await this.options.queue.release(job.id, this.options.owner, new Date()).catch(() => {});
    }
  }

  /** A job due at `runAt` was queued: claim sooner if that is before the planned wake-up. */
  notify(runAt: Date): void {
    if (runAt.getTime() >= this.wakeAt) return;
    // Not idle (claiming, or between a claim and its sleep): remember, or the job waits a poll.
    if (this.wake) this.wake();
    else this.nudged = true;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const free = this.options.concurrency - this.active.size;
      let claimed: JobRecord[] = [];
      if (free > 0) {
        if (Date.now() < this.pausedUntil) {
          await this.idle(this.pausedUntil - Date.now());
          continue;
        }
        try {
          this.nudged = false; // this claim sees every job committed before it
          claimed = await this.options.queue.claim(this.options.owner, free, this.options.leaseMs);
          // A queue in Postgres answering means Postgres is back; a Redis queue says nothing of it.
          if (this.options.queue.authoritative) this.storeHealthy(Date.now());
        } catch (error) {
          this.storeTrouble(error);
          continue;
        }
      }
      for (const job of claimed) this.spawn(job);
      if (claimed.length > 0 && claimed.length === free) continue;
      await this.idle(free > 0 ? await this.nextDueIn() : this.options.pollMs);
    }
  }

  private async nextDueIn(): Promise<number> {
    try {
      const next = await this.options.queue.nextDueAt();
      if (!next) return this.options.pollMs;
      return Math.max(0, Math.min(this.options.pollMs, next.getTime() - Date.now()));
    } catch {
      return this.options.pollMs;
    }
  }

  /** Sleeps up to `ms`, or until notified or a slot frees up. */
  private idle(ms: number): Promise<void> {
    if (!this.running || this.nudged) return Promise.resolve();
    this.wakeAt = Date.now() + ms;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wake = null;
        self.wakeAt = Infinity;
        resolve();
      }
      this.wake = done;
    });
  }

  private spawn(job: JobRecord): void {
    this.active.set(job.id, job);
    const startedAt = Date.now();
    this.options
      .handle(job)
      .then((next) => {
        this.active.delete(job.id);
        this.storeHealthy(startedAt);
        for (const continued of next) this.spawn(continued);
        // A continuation took the slot over: nothing for the claim loop to do.
        if (next.length === 0) this.wake?.();
      })
      .catch((error: unknown) => {
        this.active.delete(job.id);
        if (isUnavailable(error)) {
          this.storeTrouble(error);
        } else {
          const cause = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
          this.options.log.warn(`job ${job.id} (${job.kind} of run ${job.runId}) failed in the executor: ${cause}; it will be retried`);
        }
        const retryAt = new Date(Date.now() + Math.min(30_000, 500 * 2 ** Math.min(job.claims, 6)));
        this.options.queue.release(job.id, this.options.owner, retryAt).catch(() => {});
        this.wake?.();
      });
  }

  private async extendLeases(): Promise<void> {
    if (this.active.size === 0) return;
    try {
      const ids = [...this.active.keys()];
      await this.options.queue.extendLeases(ids, this.options.owner, this.options.leaseMs);
      const local = [...this.active.values()].filter((job) => this.options.isLocal?.(job)).map((job) => job.id);
      if (local.length > 0) await this.options.extendRecordLeases?.(local, this.options.owner, this.options.leaseMs);
    } catch (error) {
      this.options.log.warn(`could not extend job leases: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /**
   * A store is unreachable: say so once per outage, pause claiming with growing backoff (up to
   * 5 s), keep trying. Jobs that failed are given back and retried; none is dropped.
   */
  private storeTrouble(error: unknown): void {
    this.failures++;
    if (this.failures === 1) {
      this.outageSince = Date.now();
      const cause = error instanceof Error ? error.message : String(error);
      this.options.log.error(`store unavailable (${cause}); pausing work and retrying with backoff`);
    }
    this.pausedUntil = Date.now() + Math.min(5_000, 100 * 2 ** Math.min(this.failures, 6));
  }

  /** A store call that began at `since` succeeded; only one begun during the outage ends it. */
  private storeHealthy(since: number): void {
    if (this.failures === 0 || since < this.outageSince) return;
    const seconds = ((Date.now() - this.outageSince) / 1_000).toFixed(1);
    this.options.log.info(`store reachable again after ${seconds}s (${this.failures} failed attempts); resuming work`);
    this.failures = 0;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
