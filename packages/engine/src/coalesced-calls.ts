/**
 * Calls that tell another service something in the background, one at a time: what is added
 * while one call is on its way goes in the next, however much that is. A burst that would have
 * sent a call per item sends a handful, and the caller never waits for any of them.
 *
 * For notices that are best effort by design (a lost one costs a later repair, never
 * correctness): `send` must not throw, and a failed call is not retried.
 */
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
        const items = [...this.pending];
        const through = this.added;
        this.pending.clear();
        await this.send(items).catch(() => {});
        this.sentThrough = through;
        this.waiters = this.waiters.filter((waiter) => (waiter.through <= through ? (waiter.resolve(), false) : true));
      }
    } finally {
      // In the same turn as the loop's last look at `pending`: an item added after it starts a new run.
      this.sending = false;
    }
  }
}
