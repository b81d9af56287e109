/**
 * Timers this process queued itself (a sleep's wake-up, a wait's timeout), fired here at their
 * due time instead of waiting for the claim loop to find them. The job is not claimed: it is
 * taken in the statement that applies it (only while nobody holds it and it is due), so a timer
 * costs no claim.
 *
 * The claim loop holds off while one of these is being applied or comes due within
 * {@link OWN_TIMER_GRACE_MS}, at most {@link MAX_OWN_TIMER_HOLD_MS} in a row: a claim then would
 * take the job from under its timer. A job its timer did not take (no free lane, the run moved
 * on, clocks apart) the loop claims as any other: late, never lost.
 */
import type { JobRecord } from "../records.ts";

/** Timers fired here at most this far ahead; later ones are claimed as they come due. */
const OWN_TIMER_HORIZON_MS = 5 * 60_000;
/** At most this many timers of its own at once; beyond them, the claim loop serves. */
const MAX_OWN_TIMERS = 10_000;
/** How near its due time one of this process's timers makes the claim loop hold off for it. */
const OWN_TIMER_GRACE_MS = 10;
/**
 * Longest the claim loop holds off while this process's timers fire (their jobs are unclaimed
 * in the store, so a claim then would take them from under their timers): other due work waits
 * at most this long for them.
 */
const MAX_OWN_TIMER_HOLD_MS = 50;

export class OwnTimers {
  /** Armed timers: their handles and due times (ms since the epoch). */
  private readonly armed = new Map<string, { handle: ReturnType<typeof setTimeout>; dueAt: number }>();
  /** Own timers' jobs being applied now. */
  private applying = 0;
  /** Since when the claim loop has held off for them, while it does. */
  private holdingSince: number | undefined;

  /** @param due called with a timer's job at its due time: run it unclaimed, or leave it to the claim loop. */
  constructor(private readonly due: (job: JobRecord) => void) {}

  /** Arms a timer for each job due within the horizon, up to the cap; one armed already is left as it is. */
  arm(jobs: readonly JobRecord[]): void {
    const now = Date.now();
    for (const job of jobs) {
      const dueAt = job.runAt.getTime();
      if (dueAt - now > OWN_TIMER_HORIZON_MS || this.armed.size >= MAX_OWN_TIMERS || this.armed.has(job.id)) continue;
      this.schedule(job, dueAt - now);
    }
  }

  /** Forgets every armed timer (the executor stops; the jobs stay in the store for whoever claims them). */
  clear(): void {
    for (const { handle } of this.armed.values()) clearTimeout(handle);
    this.armed.clear();
  }

  /** A lane began applying one of these timers' jobs; it calls {@link finishApplying} when done. */
  startApplying(): void {
    this.applying++;
  }

  /** A lane finished applying one. Returns whether none is being applied now (the claim loop may be waiting for that). */
  finishApplying(): boolean {
    return --this.applying === 0;
  }

  /**
   * How long the claim loop should wait before claiming: while one of these timers is being
   * applied or comes due within the grace (a timer a busy event loop runs late included), up to
   * {@link MAX_OWN_TIMER_HOLD_MS} in a row; else 0.
   */
  holdFor(now: number): number {
    let soonest = Infinity;
    for (const { dueAt } of this.armed.values()) soonest = Math.min(soonest, dueAt);
    const imminent = soonest - now <= OWN_TIMER_GRACE_MS;
    if (this.applying === 0 && !imminent) return (this.holdingSince = undefined), 0;
    this.holdingSince ??= now;
    const left = this.holdingSince + MAX_OWN_TIMER_HOLD_MS - now;
    if (left <= 0) return 0;
    // An applied timer's lane end wakes the loop; a due one fires at its time, or as soon as the event loop gets to it.
    return Math.min(left, this.applying > 0 ? left : Math.max(1, soonest - now + 1));
  }

  private schedule(job: JobRecord, delayMs: number): void {
    const handle = setTimeout(() => this.fire(job), Math.max(0, delayMs));
    handle.unref?.();
    this.armed.set(job.id, { handle, dueAt: job.runAt.getTime() });
  }

  private fire(job: JobRecord): void {
    // A timer runs on the event loop's clock, which can be a millisecond behind the wall clock:
    // fired early, the store would refuse the job as not due and the claim loop would take it late.
    const early = job.runAt.getTime() - Date.now();
    if (early > 0) return this.schedule(job, early);
    this.armed.delete(job.id);
    this.due(job);
  }
}
