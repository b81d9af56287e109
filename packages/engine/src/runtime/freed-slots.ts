/**
 * Tells the queue which concurrency keys had a slot freed (`Queue.slotsFreed`), so runs held
 * back for want of room on them are claimed at once rather than at the key's next recheck.
 *
 * The notice is a statement of its own, and in a burst every run's end has one. Sent from the
 * lane that ended the run, it would keep the lane (and the claim that lane would make room for)
 * waiting a round trip per run. So it is sent from here instead: one statement in flight at a
 * time, the keys freed meanwhile gathered into the next, and the claim loop woken when one
 * lands with a key a claim may grant for (made due by it, or due already: another executor's
 * claim may have run out of room on it). Once a burst's waiting runs are all started, notices
 * find nothing waiting on their keys: waking the claim loop for those cost a claim each. A notice
 * that fails is not retried: a key not told is looked at again at its recheck all the same.
 */
import type { Queue } from "../store.ts";

export class FreedSlotNotices {
  private readonly pending = new Set<string>();
  private sending = false;
  /** Calls of `tell` so far, and how many of them the notices that landed covered. */
  private told = 0;
  private sentThrough = 0;
  private waiters: Array<{ through: number; resolve: () => void }> = [];

  constructor(
    private readonly queue: Pick<Queue, "slotsFreed">,
    /** Called after a notice found keys due: wakes the claim loops. */
    private readonly landed: () => void,
  ) {}

  /** Queues a notice for `keys`; it goes once the one in flight, if any, has landed. */
  tell(keys: readonly string[]): void {
    if (keys.length === 0) return;
    this.told++;
    for (const key of keys) this.pending.add(key);
    if (!this.sending) {
      this.sending = true;
      void this.send();
    }
  }

  /**
   * Resolves when the keys told before this call have been sent (a drain or a stop waits for
   * them), however many are told after it by lanes still running.
   */
  settled(): Promise<void> {
    const through = this.told;
    if (this.sentThrough >= through) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ through, resolve }));
  }

  private async send(): Promise<void> {
    try {
      while (this.pending.size > 0) {
        const keys = [...this.pending];
        const through = this.told;
        this.pending.clear();
        // A notice whose answer was lost may still have made keys due: it wakes the loop too.
        let madeDue = true;
        try {
          madeDue = (await this.queue.slotsFreed(keys)) > 0;
        } catch {
          // Best effort: see above.
        }
        this.sentThrough = through;
        this.waiters = this.waiters.filter((waiter) => (waiter.through <= through ? (waiter.resolve(), false) : true));
        if (madeDue) this.landed();
      }
    } finally {
      // In the same turn as the loop's last look at `pending`: a key told after it starts a new send.
      this.sending = false;
    }
  }
}
