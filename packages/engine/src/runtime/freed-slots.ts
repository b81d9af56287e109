/**
 * Tells the queue which concurrency keys had a slot freed (`Queue.slotsFreed`), so runs held
 * back for want of room on them are claimed at once rather than at the key's next recheck.
 *
 * The notice is a statement of its own, and in a burst every run's end has one. Sent from the
 * lane that ended the run, it would keep the lane (and the claim that lane would make room for)
 * waiting a round trip per run. So it is sent in the background instead ({@link CoalescedCalls}:
 * one statement in flight at a time, the keys freed meanwhile gathered into the next), and the
 * claim loop woken when one lands with a key a claim may grant for (made due by it, or due
 * already: another executor's claim may have run out of room on it). Once a burst's waiting runs
 * are all started, notices find nothing waiting on their keys: waking the claim loop for those
 * cost a claim each. A notice that fails is not retried: a key not told is looked at again at
 * its recheck all the same.
 */
import { CoalescedCalls } from "../coalesced-calls.ts";
import type { Queue } from "../store.ts";

export class FreedSlotNotices {
  private readonly notices: CoalescedCalls<string>;

  constructor(
    queue: Pick<Queue, "slotsFreed">,
    /** Called after a notice found keys due: wakes the claim loops. */
    landed: () => void,
  ) {
    this.notices = new CoalescedCalls(async (keys) => {
      // A notice whose answer was lost may still have made keys due: it wakes the loop too.
      const madeDue = await queue.slotsFreed(keys).then(
        (due) => due > 0,
        () => true,
      );
      if (madeDue) landed();
    });
  }

  /** Queues a notice for `keys`; it goes once the one in flight, if any, has landed. */
  tell(keys: readonly string[]): void {
    this.notices.add(keys);
  }

  /**
   * Resolves when the keys told before this call have been sent (a drain or a stop waits for
   * them), however many are told after it by lanes still running.
   */
  settled(): Promise<void> {
    return this.notices.settled();
  }
}
