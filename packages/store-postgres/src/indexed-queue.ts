/**
 * The queue with a {@link ReadyQueue} (Redis) as the index of what is due, and the jobs table
 * as the record. Redis answers "what is due" for every executor without polling Postgres; the
 * record holds every job and every lease. A job Redis hands out is leased in the record before
 * it runs (one statement for the whole claim), so the commit that completes a job checks the
 * same lease with either queue, and a worker whose Redis lease ran out, or whose job Redis lost
 * and re-added, cannot run a job another worker holds.
 *
 * Whatever Redis loses (a flush, a failover, a publish cut short by a crash) `reconcile` puts
 * back from the record: every free job older than a grace period that Redis does not know.
 */
import { CoalescedCalls, within, type JobRecord, type Queue, type ReadyQueue } from "@stepwise/engine";
import type { PgQueue } from "./queue.ts";

/** How long a claim that met deleted jobs waits for the deletions on their way to Redis before it claims their places again. */
const SETTLE_BEFORE_RECLAIM_MS = 1_000;
/** At most one line in this long about deletions Redis was not told of: while it is out of reach, every call fails. */
const UNTOLD_WARNING_EVERY_MS = 60_000;

export class IndexedQueue implements Queue {
  /**
   * Deleted jobs, told to Redis in the background, a burst's in a few calls. Told from the lane
   * that ended the job, every job's end waited a round trip to Redis before its lane was free,
   * one call per job (keyed jobs too, whose ends Redis need not hear of: it never had them); a
   * burst of keyed runs took about 1.3 times as long as now. No run depends on the telling: a
   * job deleted in the record that Redis still hands out (due, or its Redis lease run out) comes
   * out of a claim as gone (`leaseIndexed`), is forgotten then, and its place claimed again.
   */
  private readonly deletions = new CoalescedCalls<string>(
    (ids) => this.index.forget(ids),
    (error, ids) => this.untold(error, ids.length),
  );
  /** Deletions Redis was not told of since the last line that said so, and when that line was. */
  private untoldCount = 0;
  private untoldWarnedAt = -Infinity;

  constructor(
    private readonly record: PgQueue,
    private readonly index: ReadyQueue,
    /** Jobs younger than this are left to their own publish by `reconcile` (the commit → publish gap). */
    private readonly reconcileGraceMs = 5_000,
    /** Where a failure in the background goes (the executor's log). */
    private readonly warn: (line: string) => void = () => {},
  ) {}

  /** Deletions Redis did not take: said in the log, once a minute at most with how many since. */
  private untold(error: unknown, count: number): void {
    this.untoldCount += count;
    // The monotonic clock: a wall clock set back would keep the log silent until it caught up.
    const now = performance.now();
    if (now - this.untoldWarnedAt < UNTOLD_WARNING_EVERY_MS) return;
    this.untoldWarnedAt = now;
    this.warn(`could not tell Redis of ${this.untoldCount} deleted job(s) (${error instanceof Error ? error.message : String(error)}); a claim that meets them drops them`);
    this.untoldCount = 0;
  }

  async claim(owner: string, limit: number, leaseMs: number): Promise<JobRecord[]> {
    // Invocations waiting for a concurrency slot are claimed from the record, whose count of
    // slots in use is exact; the rest from Redis. Both at once: one after the other, every claim
    // paid both round trips, though a burst of one kind finds the other empty. What Redis handed
    // out past the lanes the keyed claim filled goes back at once, never leased in the record.
    const [fromRecord, fromIndex] = await Promise.allSettled([this.record.claimKeyed(owner, limit, leaseMs), this.index.claim(owner, limit, leaseMs)]);
    const ids = fromIndex.status === "fulfilled" ? fromIndex.value : [];
    const keyed = fromRecord.status === "fulfilled" ? fromRecord.value : [];
    // No room at all when the keyed claim failed: Redis's jobs are not left leased there until their lease runs out.
    const room = fromRecord.status === "fulfilled" ? Math.max(0, limit - keyed.length) : 0;
    await Promise.all(ids.slice(room).map((id) => this.index.release(id, owner, 0).catch(() => {})));
    if (fromRecord.status === "rejected") throw fromRecord.reason;
    // Redis out of reach: the keyed jobs (leased in the record) run all the same; the next claim meets the outage.
    if (fromIndex.status === "rejected" && keyed.length === 0) throw fromIndex.reason;
    const { leased, gone } = await this.leaseIndexed(ids.slice(0, room), owner, leaseMs);
    if (gone === 0 || leased.length === room) return [...keyed, ...leased];
    // Jobs the record deleted took places in this claim: their deletion had not reached Redis
    // (it goes in the background), and Redis may hold more of them, as many as a bulk cancel
    // dropped. Once the deletions on their way have landed (a second at most), the places are
    // claimed again: a drain that meets a cancel's dropped jobs does not end with live ones due
    // behind them. A job Redis still holds after that is gone for another reason; the next claim meets it.
    await within(this.deletions.settled(), Date.now() + SETTLE_BEFORE_RECLAIM_MS);
    const more = await this.index.claim(owner, room - leased.length, leaseMs).catch(() => []);
    return [...keyed, ...leased, ...(await this.leaseIndexed(more, owner, leaseMs)).leased];
  }

  /** Leases in the record the jobs Redis handed out; `gone`: how many the record no longer has. */
  private async leaseIndexed(ids: string[], owner: string, leaseMs: number): Promise<{ leased: JobRecord[]; gone: number }> {
    if (ids.length === 0) return { leased: [], gone: 0 };
    const { leased, busy } = await this.record.takeLeases(ids, owner, leaseMs);
    // Redis thought these were free: it lost a lease or a completion, or its clock runs ahead of
    // the record's. The record decides; a job not free yet goes back for as long as it has left.
    // Telling Redis is best effort here: the jobs leased above must reach the caller whatever
    // Redis says (a job it keeps by mistake comes out of a later claim and is judged again). The
    // gone ones join the deletions told in the background, which a claim again waits for.
    const gone = busy.filter((job) => job.freeInMs === null).map((job) => job.id);
    this.deletions.add(gone);
    for (const job of busy) if (job.freeInMs !== null) await this.index.release(job.id, owner, job.freeInMs).catch(() => {});
    return { leased, gone: gone.length };
  }

  async extendLeases(jobIds: string[], owner: string, leaseMs: number): Promise<void> {
    // The record's leases are the fence; Redis's only keep others from claiming in vain.
    const [record] = await Promise.allSettled([this.record.extendLeases(jobIds, owner, leaseMs), this.index.extendLeases(jobIds, owner, leaseMs)]);
    if (record.status === "rejected") throw record.reason;
  }

  async release(job: JobRecord, owner: string, options: { delayMs: number; failure?: string }): Promise<void> {
    const released = await this.record.releaseInRecord(job, owner, options);
    if (released && !job.concurrency) await this.index.release(job.id, owner, options.delayMs).catch(() => {}); // reconcile re-adds it otherwise
  }

  async afterCommit(changes: { queued: JobRecord[]; deleted: string[] }): Promise<void> {
    this.deletions.add(changes.deleted);
    // Published before the commit's caller goes on: another executor may be the one to run them.
    await this.index.publish(changes.queued.filter((job) => !job.concurrency));
  }

  settled(): Promise<void> {
    return this.deletions.settled();
  }

  slotsFreed(keys: string[]): Promise<number> {
    return this.record.slotsFreed(keys);
  }

  async nextDueIn(): Promise<number | null> {
    const [indexed, keyed] = await Promise.all([this.index.nextDueIn(), this.record.nextKeyDueIn()]);
    return indexed === null ? keyed : keyed === null ? indexed : Math.min(indexed, keyed);
  }

  async reconcile(): Promise<number> {
    const [indexed, keyed] = await Promise.all([
      this.index.reconcile((afterId, limit) => this.record.listFree(afterId, limit, this.reconcileGraceMs)),
      this.record.reconcile(),
    ]);
    return indexed + keyed;
  }

  async releaseAllLeases(): Promise<void> {
    await this.record.releaseAllLeases();
    await this.index.releaseAllLeases();
  }
}
