/**
 * Calls that tell another service something in the background, one at a time: what is added
 * while one call is on its way goes in the next. A burst that would have sent a call per item
 * sends a handful, and the caller never waits for any of them.
 *
 * For notices that are best effort by design (a lost one costs a later repair, never
 * correctness): a call that fails is not retried, only reported to `failed`.
 */

/** Items per call at most: an index that was out of reach for a while gets its backlog in pieces it can take. */
const MAX_PER_CALL = 1_000;

export class CoalescedCalls<T> {
  /** Items not sent yet, in the order they were added, each with the number of the `add` that brought it. */
  private readonly pending = new Map<T, number>();
  private sending = false;
  /** Calls of `add` so far, and through which of them every item has been sent. */
  private added = 0;
  private sentThrough = 0;
  private waiters: Array<{ through: number; resolve: () => void }> = [];

  constructor(
    private readonly send: (items: T[]) => Promise<void>,
    /** Told of each call that failed, with its items (to say so in the log). */
    private readonly failed?: (error: unknown, items: T[]) => void,
  ) {}

  /** Queues `items`; they go once the call in flight, if any, has landed. */
  add(items: Iterable<T>): void {
    const number = this.added + 1;
    let fresh = false;
    for (const item of items) {
      if (this.pending.has(item)) continue;
      this.pending.set(item, number);
      fresh = true;
    }
    if (!fresh) return;
    this.added = number;
    if (!this.sending) {
      this.sending = true;
      void this.run();
    }
  }

  /**
   * Resolves when the items added before this call have been sent (a drain or a stop waits for
   * them), however many are added after it.
   */
  settled(): Promise<void> {
    const through = this.added;
    if (this.sentThrough >= through) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ through, resolve }));
  }

  private async run(): Promise<void> {
    try {
      while (this.pending.size > 0) {
        // The oldest first, MAX_PER_CALL at most: what piled up in an outage goes in several.
        const items: T[] = [];
        for (const item of this.pending.keys()) {
          if (items.length === MAX_PER_CALL) break;
          items.push(item);
        }
        for (const item of items) this.pending.delete(item);
        // Every add before the first one still waiting is in this call or an earlier one.
        const next = this.pending.values().next();
        const through = next.done ? this.added : next.value - 1;
        await this.call(items);
        this.sentThrough = Math.max(this.sentThrough, through);
        this.waiters = this.waiters.filter((waiter) => (waiter.through <= this.sentThrough ? (waiter.resolve(), false) : true));
      }
    } finally {
      // In the same turn as the loop's last look at `pending`: an item added after it starts a new run.
      this.sending = false;
    }
  }

  /** One call, started in this turn; a send that throws before its first await failed like any other. */
  private async call(items: T[]): Promise<void> {
    try {
      await this.send(items);
    } catch (error) {
      // Best effort: see above. A report that throws must not stop the calls after it.
      try {
        this.failed?.(error, items);
      } catch {}
    }
  }
}
