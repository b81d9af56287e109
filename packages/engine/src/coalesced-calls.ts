/**
 * Calls that tell another service something in the background, one at a time: what is added
 * while one call is on its way goes in the next, however much that is. A burst that would have
 * sent a call per item sends a handful, and the caller never waits for any of them.
 *
 * For notices that are best effort by design (a lost one costs a later repair, never
 * correctness): `send` must not throw, and a failed call is not retried.
 */
/** Items per call at most: an index that was out of reach for a while gets its backlog in pieces it can take. */
const MAX_PER_CALL = 1_000;

export class CoalescedCalls<T> {
  private readonly pending = new Set<T>();
  private sending = false;
  /** Calls of `add` so far, and how many of them the calls that landed covered. */
  private added = 0;
  private sentThrough = 0;
  private waiters: Array<{ through: number; resolve: () => void }> = [];

  constructor(private readonly send: (items: T[]) => Promise<void>) {}

  /** Queues `items`; they go once the call in flight, if any, has landed. */
  add(items: Iterable<T>): void {
    const before = this.pending.size;
    for (const item of items) this.pending.add(item);
    if (this.pending.size === before) return;
    this.added++;
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
        // One call carries at most MAX_PER_CALL: what piled up in an outage goes in several.
        const items = [...this.pending].slice(0, MAX_PER_CALL);
        for (const item of items) this.pending.delete(item);
        const through = this.pending.size === 0 ? this.added : this.sentThrough;
        await this.call(items);
        this.sentThrough = through;
        this.waiters = this.waiters.filter((waiter) => (waiter.through <= through ? (waiter.resolve(), false) : true));
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
    } catch {
      // Best effort: see above.
    }
  }
}
