/**
 * The worker lanes: claim due jobs up to `concurrency`, run each in a lane of its own (a lane
 * goes straight on with the job its job handed it: the run's next invocation), keep their
 * leases alive with a heartbeat, give failed jobs back with backoff, and pause through a
 * store outage. The long-lived executor runs them until `stop()`; a Worker's request, alarm
 * or cron runs them as a `drain` that ends when nothing is due or its budget is spent.
 *
 * Between claims the loop sleeps on one latch, woken by a lane ending, a job queued by this
 * process, or `stop()`, and otherwise until the next job is due (on the store's clock) or the
 * poll interval passes. With every slot busy it waits for a slot, whatever is queued meanwhile:
 * it never spins.
 *
 * Timers this process queued (a sleep's wake-up, a wait's timeout) it also fires itself into a
 * free lane at their due time, unclaimed (see `OwnTimers`); the claim loop holds off for them
 * briefly so the two do not reach for the same job at once.
 */
import { formatDuration, type Logger } from "../log.ts";
import type { Observer } from "../signals.ts";
import { DeploymentUnreachable, describe, InvocationNotStarted, isUnavailable, LeaseLostError } from "../errors.ts";
import type { JobRecord } from "../records.ts";
import type { Queue } from "../store.ts";
import { Latch } from "./latch.ts";
import { OwnTimers } from "./own-timers.ts";
import { within } from "../within.ts";

/** How a lane came by a job (it decides how the job's commit takes it, and whom it tells), and what the lane allows it. */
export interface JobHandling {
  /** A timer of this process's own, not claimed, which the job's commit must take (see `Fence`). */
  unclaimed?: boolean;
  /**
   * Written already leased to this worker (a continuation, the first invocation of a run this
   * process started): the queue never heard of it, so it need not hear that it is done.
   */
  unpublished?: boolean;
  /**
   * The lane's leave to go on with this job's run itself, as it would with a continuation: none
   * once it stops, or when a drain's budget is spent. A leave counts as a job started, and the
   * invocation before it as one that ran, until it is given back.
   */
  goOn?: () => GoingOn | undefined;
}

/** A lane's leave to invoke a run's app again under the same job. */
export interface GoingOn {
  /** It did not go on after all: the counts it took are given back. */
  giveBack(): void;
}

export interface LanesOptions {
  queue: Queue;
  owner: string;
  concurrency: number;
  leaseMs: number;
  /** Longest sleep between claims when idle (other executors may queue work). */
  pollMs: number;
  log: Logger;
  /** Told of leases lost and store failures (metrics). */
  observe?: Observer;
  /** Runs one job; returns the job this lane runs next (a continuation), if any. */
  handle(job: JobRecord, how: JobHandling): Promise<JobRecord[]>;
  /** A job handed back unrun (its continuation state, if any, can go). */
  handedBack?(job: JobRecord): void;
  /** Resolves once what the jobs left to tell the queue is told (a drain ends after it). */
  settled?(): Promise<void>;
}

export interface DrainBudget {
  /** Start no job after this many milliseconds. */
  budgetMs: number;
  /** Start at most this many jobs (continuations included). */
  maxJobs?: number;
}

export interface LaneStats {
  /** Jobs that ran to their end (applied, or dropped as already done). */
  ran: number;
  /** Jobs that failed in the executor and were given back for a retry. */
  failed: number;
  /** Whether a drain stopped for its budget rather than for lack of due work. */
  stoppedEarly: boolean;
}

type Mode = "forever" | "drain";

export class Lanes {
  private readonly active = new Map<string, JobRecord>();
  /** Slots a claim on its way may fill: not free for adopted jobs meanwhile. */
  private claiming = 0;
  /** The claim loop waits for a lane to end (every one was busy): an ending lane wakes it. */
  private waitingForLane = false;
  private readonly wake = new Latch();
  private readonly laneEnded = new Latch();
  private lanes = 0;
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private stats: LaneStats = { ran: 0, failed: 0, stoppedEarly: false };
  private budget: { deadline: number; maxJobs: number; started: number } | undefined;
  /** A store unreachable during a drain: every lane stops, and the drain rethrows it. */
  private outage: unknown;
  /** Consecutive failures caused by an unreachable store, and when the streak began. */
  private failures = 0;
  private outageSince = 0;
  private pausedUntil = 0;
  /** Timers this process fires itself; at its due time a timer's job takes a free lane, or is left to the claim loop. */
  private readonly ownTimers = new OwnTimers((job) => {
    if (this.freeSlots() > 0) this.spawn(job, "forever", { unclaimed: true });
    else this.notify();
  });

  constructor(private readonly options: LanesOptions) {}

  /** Works the queue until {@link stop}. */
  start(): void {
    if (this.running) return;
    this.begin();
    this.loopDone = this.loop("forever");
  }

  /** Works the queue until nothing is due or the budget is spent; started jobs run to their end. */
  async drain(budget: DrainBudget): Promise<LaneStats & { nextDueIn: number | null }> {
    if (this.running) throw new Error("these lanes are already running");
    this.begin();
    this.budget = { deadline: Date.now() + budget.budgetMs, maxJobs: budget.maxJobs ?? Infinity, started: 0 };
    try {
      await this.loop("drain");
      while (this.lanes > 0) await this.laneEnded.wait(1_000);
      // A Worker may be frozen once its request is answered: what the jobs left to tell goes first.
      await this.settled();
    } finally {
      this.running = false;
      clearInterval(this.heartbeat);
    }
    if (this.outage !== undefined) throw this.outage;
    return { ...this.stats, nextDueIn: await this.options.queue.nextDueIn() };
  }

  /**
   * Stops claiming, waits up to `graceMs` for running jobs, and gives back the rest. The grace
   * period bounds the whole stop, a claim stuck on an unresponsive store included.
   */
  async stop(graceMs = 10_000): Promise<void> {
    const deadline = Date.now() + graceMs;
    this.running = false;
    this.wake.set();
    await within(this.loopDone, deadline);
    while (this.lanes > 0 && Date.now() < deadline) await this.laneEnded.wait(Math.min(100, deadline - Date.now()));
    clearInterval(this.heartbeat);
    this.ownTimers.clear();
    const { queue, owner } = this.options;
    // Best effort, briefly: a job not given back is claimable anyway once its lease runs out.
    const releases = Promise.all([...this.active.values()].map((job) => queue.release(job, owner, { delayMs: 0 }).catch(() => {})));
    await within(releases, Date.now() + 1_000);
  }

  /** Lanes free for more work now (none unless working the queue until `stop()`). */
  freeSlots(): number {
    return this.running && !this.budget ? Math.max(0, this.options.concurrency - this.active.size - this.claiming) : 0;
  }

  /**
   * Runs jobs this process leased to itself in a commit (the first invocations of runs it just
   * started), each in a lane of its own; one that finds every lane taken by then is given back.
   */
  async adopt(jobs: readonly JobRecord[]): Promise<void> {
    for (const job of jobs) {
      if (this.freeSlots() > 0) this.spawn(job, "forever", { unpublished: true });
      else await this.handBack(job);
    }
  }

  /** A job was queued by this process: claim again instead of sleeping. */
  notify(): void {
    if (this.running) this.wake.set();
  }

  /** Timers this process queued: fired here at their due time (working the queue until `stop()` only). */
  fireOwnTimers(timers: readonly JobRecord[]): void {
    if (this.running && !this.budget) this.ownTimers.arm(timers);
  }

  private begin(): void {
    this.running = true;
    this.stats = { ran: 0, failed: 0, stoppedEarly: false };
    this.outage = undefined;
    this.heartbeat = setInterval(() => void this.extendLeases(), Math.max(100, this.options.leaseMs / 3));
  }

  private async loop(mode: Mode): Promise<void> {
    const { queue, owner, concurrency, leaseMs, pollMs } = this.options;
    while (this.running) {
      if (mode === "drain" && this.outOfBudget()) break;
      const free = concurrency - this.active.size;
      if (free <= 0) {
        this.waitingForLane = true;
        await this.wake.wait(pollMs);
        this.waitingForLane = false;
        continue;
      }
      const pause = this.pausedUntil - Date.now();
      if (pause > 0) {
        if (mode === "drain") break;
        await this.wake.wait(pause);
        continue;
      }
      const hold = mode === "forever" ? this.ownTimers.holdFor(Date.now()) : 0;
      if (hold > 0) {
        await this.wake.wait(hold);
        continue;
      }
      const limit = this.budget ? Math.min(free, this.budget.maxJobs - this.budget.started) : free;
      // The claim's jobs are counted before it is sent, so continuations started meanwhile
      // cannot take a drain past maxJobs; what the claim did not find is given back after.
      if (this.budget) this.budget.started += limit;
      const startedAt = Date.now();
      let claimed: JobRecord[] = [];
      this.claiming = limit;
      try {
        claimed = await queue.claim(owner, limit, leaseMs);
        this.reachable(startedAt);
      } catch (error) {
        this.trouble(error, "claiming jobs");
        if (mode === "drain") this.outage ??= error;
        continue;
      } finally {
        this.claiming = 0;
        if (this.budget) this.budget.started -= limit - claimed.length;
      }
      // Stopped while the claim was on its way: these jobs are not ours to run any more.
      if (!this.running) {
        await Promise.all(claimed.map((job) => this.handBack(job)));
        break;
      }
      for (const job of claimed) this.spawn(job, mode);
      if (claimed.length === limit) continue;
      if (mode === "drain") {
        if (this.lanes === 0 && !this.wake.isSet) {
          // Slot notices still on their way may make keys due (this drain takes those too), and the
          // queue's deletions are told before the drain ends.
          await this.settled();
          if (!this.wake.isSet) break;
        }
        await this.wake.wait(pollMs);
        continue;
      }
      const dueIn = await this.nextDueIn();
      // Woken for a due time one of this process's timers takes, the hold above lets the timer go first.
      await this.wake.wait(dueIn);
    }
  }

  /** What the jobs left to tell the queue, told; a store that does not answer is waited for 1 s at most. */
  private async settled(): Promise<void> {
    if (this.options.settled) await within(this.options.settled(), Date.now() + 1_000);
  }

  private outOfBudget(): boolean {
    const budget = this.budget;
    if (!budget || this.outage !== undefined) return this.outage !== undefined;
    const out = Date.now() >= budget.deadline || budget.started >= budget.maxJobs;
    if (out) this.stats.stoppedEarly = true;
    return out;
  }

  private async nextDueIn(): Promise<number> {
    const { pollMs } = this.options;
    try {
      const next = await this.options.queue.nextDueIn();
      return next === null ? pollMs : Math.max(0, Math.min(pollMs, next));
    } catch {
      return pollMs;
    }
  }

  private spawn(job: JobRecord, mode: Mode, how: JobHandling = {}): void {
    this.lanes++;
    void this.lane(job, mode, how).finally(() => {
      this.lanes--;
      this.laneEnded.set();
      // A lane that ends makes nothing due: it wakes the claim loop only when that waits for a
      // lane (or, draining, to see whether it is done). Waking it at every end sent a claim per
      // finished job for nothing, and a new run committed meanwhile found its lane held by that
      // claim and went through the queue (on Redis, 2-7 ms from an event to its first step).
      if (this.waitingForLane || this.budget) this.wake.set();
    });
  }

  /** Runs `first`, then each continuation it hands over, in this lane. */
  private async lane(first: JobRecord, mode: Mode, how: JobHandling): Promise<void> {
    let job: JobRecord | undefined = first;
    while (job) {
      const unclaimed = how.unclaimed === true;
      this.active.set(job.id, job);
      let next: JobRecord[] = [];
      const startedAt = Date.now();
      if (unclaimed) this.ownTimers.startApplying();
      try {
        next = await this.options.handle(job, { ...how, goOn: () => this.leaveToGoOn(mode) });
        this.stats.ran++;
        this.reachable(startedAt);
      } catch (error) {
        // A timer of its own that failed is nobody's failure: the claim loop runs it as any other.
        if (!unclaimed) await this.failed(job, error);
      } finally {
        this.active.delete(job.id);
        // The claim loop may be holding off for this one.
        if (unclaimed && this.ownTimers.finishApplying()) this.wake.set();
      }
      // Not taken (another took it, the run moved on, clocks apart, it failed): the claim loop looks at it now.
      if (unclaimed && next.length === 0) this.notify();
      // What follows in this lane is a continuation: written leased to this worker, never published.
      how = { unpublished: true };
      job = next.shift();
      for (const extra of next) await this.handBack(extra);
      if (job && !this.startsAnother(mode)) {
        await this.handBack(job);
        job = undefined;
      }
    }
  }

  /**
   * Leave for a job to invoke its run's app again itself, as if its answer had queued a
   * continuation: counted as that continuation would be, its invocation before as one job run.
   */
  private leaveToGoOn(mode: Mode): GoingOn | undefined {
    if (!this.startsAnother(mode)) return undefined;
    this.stats.ran++;
    return {
      giveBack: () => {
        this.stats.ran--;
        if (this.budget) this.budget.started--;
      },
    };
  }

  /** Whether a lane may start its run's next job itself, counted against a drain's budget (else it hands the job back). */
  private startsAnother(mode: Mode): boolean {
    if (!this.running || (mode === "drain" && this.outOfBudget())) return false;
    if (this.budget) this.budget.started++;
    return true;
  }

  /**
   * A job this process will not run: claimable by anyone, at once. The loop claims again: a
   * job given back because a claim on its way held the free lanes is not left to the next poll.
   */
  private async handBack(job: JobRecord): Promise<void> {
    this.options.handedBack?.(job);
    await this.options.queue.release(job, this.options.owner, { delayMs: 0 }).catch(() => {});
    this.notify();
  }

  private async failed(job: JobRecord, error: unknown): Promise<void> {
    const { queue, owner, log } = this.options;
    const what = `job ${job.id} (${job.kind}${job.stepId ? ` of step "${job.stepId}"` : ""} of run ${job.runId})`;
    if (error instanceof LeaseLostError) {
      // Another executor finished it, or the run ended meanwhile: the answer is dropped whole.
      log.info(`${what}: ${error.message}`);
      this.options.observe?.({ type: "lease-lost", kind: job.kind });
      return;
    }
    this.stats.failed++;
    if (error instanceof DeploymentUnreachable) {
      // Nothing ran: no failure of the job, which would end its run after a few.
      if (!error.quiet) log.warn(error.message);
      await queue.release(job, owner, { delayMs: error.retryInMs }).catch(() => {});
      // The loop may be asleep for a poll interval: it looks at the queue's next due time again.
      this.notify();
      return;
    }
    // The app's words about its own call to the executor may name a refused connection: not the store's outage.
    if (!(error instanceof InvocationNotStarted) && isUnavailable(error)) {
      this.trouble(error, "running a job");
      if (this.budget) this.outage ??= error;
      await queue.release(job, owner, { delayMs: 1_000 }).catch(() => {});
      return;
    }
    const cause = error instanceof Error ? `${error.name}: ${error.message}` : describe(error);
    const delayMs = Math.min(30_000, 500 * 2 ** Math.min(job.failures, 6));
    const where = error instanceof InvocationNotStarted ? "did not start in the app, not an attempt of the function" : "failed in the executor";
    log.warn(`${what} ${where} (failure ${job.failures + 1}): ${cause}; retrying in ${formatDuration(delayMs)}`);
    await queue.release(job, owner, { delayMs, failure: cause.slice(0, 2_000) }).catch(() => {});
  }

  private async extendLeases(): Promise<void> {
    if (this.active.size === 0) return;
    try {
      await this.options.queue.extendLeases([...this.active.keys()], this.options.owner, this.options.leaseMs);
    } catch (error) {
      if (this.failures === 0) this.options.log.warn(`could not extend job leases: ${describe(error)}`);
    }
  }

  /**
   * A store is unreachable: say so once per outage, pause claiming with growing backoff (up to
   * 5 s), keep trying. Jobs that failed are given back and retried; none is dropped.
   */
  private trouble(error: unknown, doing: string): void {
    this.options.observe?.({ type: "store-error", doing });
    if (!isUnavailable(error)) {
      this.options.log.warn(`${doing} failed: ${describe(error)}; retrying`);
    } else {
      if (this.failures === 0) {
        this.outageSince = Date.now();
        this.options.log.error(`store unavailable (${describe(error)}); pausing work and retrying with backoff`);
      }
      this.failures++;
    }
    this.pausedUntil = Date.now() + Math.min(5_000, 100 * 2 ** Math.min(this.failures, 6));
  }

  /** A store call that began at `since` succeeded; only one begun during the outage ends it. */
  private reachable(since: number): void {
    if (this.failures === 0 || since < this.outageSince) return;
    const seconds = ((Date.now() - this.outageSince) / 1_000).toFixed(1);
    this.options.log.info(`store reachable again after ${seconds}s (${this.failures} failed attempts); resuming work`);
    this.failures = 0;
  }
}
