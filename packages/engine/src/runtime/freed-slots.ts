/**
 * Tells the queue which concurrency keys had a slot freed (`Queue.slotsFreed`), so runs held
 * back for want of room on them are claimed at once rather than at the key's next recheck.
 *
 * The notice is a statement of its own, and in a burst every run's end has one. Sent from the
 * lane that ended the run, it would keep the lane (and the claim that lane would make room for)
 * waiting a round trip per run. So it is sent from here instead: one statement in flight at a
 * time, the keys freed meanwhile gathered into the next, and the claim loop woken when one
 * lands (the keys it names may have just become due). A notice that fails is not retried: a
 * key not told is looked at again at its recheck all the same.
 */
import type { Queue } from "../store.ts";

export class FreedSlotNotices {
  private readonly pending = new Set<string>();
  private sending: Promise<void> | undefined;

  constructor(
    private readonly queue: Pick<Queue, "slotsFreed">,
    /** Called after each notice landed: wakes the claim loops. */
    private readonly landed: () => void,
  ) {}

  /** Queues a notice for `keys`; it goes once the one in flight, if any, has landed. */
  tell(keys: readonly string[]): void {
    if (keys.length === 0) return;
    for (const key of keys) this.pending.add(key);
    this.sending ??= this.send().finally(() => (this.sending = undefined));
  }

  /** Resolves when every notice told so far has been sent (a drain or a stop waits for them). */
  async settled(): Promise<void> {
    while (this.sending) await this.sending;
  }

  private async send(): Promise<void> {
    while (this.pending.size > 0) {
      const keys = [...this.pending];
      this.pending.clear();
      await this.queue.slotsFreed(keys).catch(() => {});
      this.landed();
    }
  }
}
