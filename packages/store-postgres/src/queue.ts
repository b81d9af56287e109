/**
 * The jobs table as the queue (and, with Redis, as the record whose leases fence every commit).
 * A claim is one statement: due rows whose lease is free or expired, `FOR UPDATE SKIP LOCKED`
 * so concurrent executors never take the same row, leased in the same `UPDATE … RETURNING`.
 * One statement needs no interactive transaction, so it also works over an HTTP driver. Every
 * time here is the database's: executors whose clocks disagree still agree on what is due.
 */
import type { JobRecord, Queue } from "@stepwise/engine";
import { idsParam, type SqlClient } from "./sql.ts";
import { JOB_COLUMNS, toJob } from "./rows.ts";
import { claimKeyed, NEXT_KEY_DUE, reconcileKeys, slotsFreed } from "./concurrency-claim.ts";

const LEASE = "now() + make_interval(secs => $3::float8 / 1000)";
/** The jobs named by $1, a JSON array of IDs (see `idsParam`). */
const JOB_IDS = idsParam("$1", "bigint");

export class PgQueue implements Queue {
  constructor(private readonly sql: SqlClient) {}

  /**
   * Invocations waiting for a concurrency slot first (bounded by their limits, and claimed only
   * through their keys: see `concurrency-claim.ts`), then the rest in order of due time.
   */
  async claim(owner: string, limit: number, leaseMs: number): Promise<JobRecord[]> {
    const keyed = await this.claimKeyed(owner, limit, leaseMs);
    if (keyed.length >= limit) return keyed;
    return [...keyed, ...(await this.claimPlain(owner, limit - keyed.length, leaseMs))];
  }

  /** Leases up to `limit` invocations waiting for a concurrency slot, as their keys have room. */
  claimKeyed(owner: string, limit: number, leaseMs: number): Promise<JobRecord[]> {
    return claimKeyed(this.sql, owner, limit, leaseMs);
  }

  slotsFreed(keys: string[]): Promise<number> {
    return slotsFreed(this.sql, keys);
  }

  /** Milliseconds until a concurrency key is due to be looked at (0 if one is), or null. */
  async nextKeyDueIn(): Promise<number | null> {
    const rows = await this.sql.query<{ ms: number | string | null }>(`SELECT extract(epoch FROM (${NEXT_KEY_DUE} - now())) * 1000 AS ms`);
    const ms = rows[0]?.ms;
    return ms == null ? null : Math.max(0, Number(ms));
  }

  private async claimPlain(owner: string, limit: number, leaseMs: number): Promise<JobRecord[]> {
    const rows = await this.sql.query(
      // The jobs are picked once, as an array, and then leased by ID. Written as `id IN (SELECT
      // … LIMIT $2 FOR UPDATE SKIP LOCKED)`, the pick was a subquery the planner may run again
      // for every row of the table (a semi join with the table outside, chosen when the
      // statistics say the queue is empty, as they do after an ANALYZE between bursts): each run
      // skipped the rows the last one had leased and picked the next ones: one claim of 100
      // leased all 10,000 due jobs, in seven seconds (a claim of 10 took all 1,000 in
      // test/plans-made-small.test.ts). An init plan runs once.
      `UPDATE jobs SET locked_by = $1, locked_until = ${LEASE}, claims = claims + 1
       WHERE id = ANY (ARRAY(
         SELECT id FROM jobs
         WHERE concurrency IS NULL AND run_at <= now() AND (locked_until IS NULL OR locked_until < now())
         ORDER BY run_at, id
         LIMIT $2
         FOR UPDATE SKIP LOCKED
       ))
       RETURNING ${JOB_COLUMNS}`,
      [owner, limit, leaseMs],
      // Named columns, not *: a prepared statement's result type must not change when a later schema adds one.
      { prepare: "stepwise_claim_v2" },
    );
    return rows.map(toJob).sort((a, b) => a.runAt.getTime() - b.runAt.getTime());
  }

  /**
   * A job another transaction holds is left alone this beat: its holder is writing it (its own
   * worker's commit, which deletes it, or a cancel), and the next beat, a third of a lease later,
   * extends it if it is still there. Waiting for it could deadlock with a statement that holds
   * that job and wants another this beat had already updated: a change that deletes its run's
   * other jobs, eight runs at a time when gathered (`change-writer.ts`).
   */
  async extendLeases(jobIds: string[], owner: string, leaseMs: number): Promise<void> {
    if (jobIds.length === 0) return;
    await this.sql.query(
      `UPDATE jobs SET locked_until = ${LEASE}
       WHERE id = ANY (ARRAY(SELECT id FROM jobs WHERE id = ANY (${JOB_IDS}) AND locked_by = $2 FOR UPDATE SKIP LOCKED))`,
      [JSON.stringify(jobIds), owner, leaseMs],
      { prepare: "stepwise_extend_leases" },
    );
  }

  async release(job: JobRecord, owner: string, options: { delayMs: number; failure?: string }): Promise<void> {
    await this.releaseInRecord(job, owner, options);
  }

  /** Gives the job back in the record; false when `owner` no longer held it. */
  async releaseInRecord(job: JobRecord, owner: string, options: { delayMs: number; failure?: string }): Promise<boolean> {
    // A released invocation frees its concurrency slots: its keys are looked at again at once.
    const rows = await this.sql.query<{ run_at: Date | string }>(
      `WITH released AS (
         UPDATE jobs SET locked_by = NULL, locked_until = NULL, run_at = now() + make_interval(secs => $3::float8 / 1000),
           failures = failures + CASE WHEN $4::text IS NULL THEN 0 ELSE 1 END, last_error = coalesce($4::text, last_error)
         WHERE id = $1 AND locked_by = $2 RETURNING run_at, concurrency
       ),
       keyed AS (
         INSERT INTO concurrency_keys AS k (key, next_at)
         SELECT s.slot->>'key', now() FROM released r, jsonb_array_elements(r.concurrency) AS s(slot) ORDER BY 1
         ON CONFLICT (key) DO UPDATE SET next_at = excluded.next_at WHERE excluded.next_at < k.next_at
         RETURNING 1
       )
       SELECT run_at FROM released`,
      [job.id, owner, options.delayMs, options.failure ?? null],
    );
    return rows.length > 0;
  }

  async afterCommit(): Promise<void> {}

  async nextDueIn(): Promise<number | null> {
    const rows = await this.sql.query<{ ms: number | string | null }>(
      `SELECT extract(epoch FROM (least(
         (SELECT min(run_at) FROM jobs WHERE locked_until IS NULL AND concurrency IS NULL),
         (SELECT min(locked_until) FROM jobs WHERE locked_until IS NOT NULL AND concurrency IS NULL),
         ${NEXT_KEY_DUE}) - now())) * 1000 AS ms`,
      [],
      { prepare: "stepwise_next_due" },
    );
    const ms = rows[0]?.ms;
    return ms == null ? null : Math.max(0, Number(ms));
  }

  /** Keys of invocations whose lease ran out are due again (the plain claim takes other such jobs itself). */
  async reconcile(): Promise<number> {
    return reconcileKeys(this.sql);
  }

  async releaseAllLeases(): Promise<void> {
    await this.sql.query("UPDATE jobs SET locked_by = NULL, locked_until = NULL WHERE locked_by IS NOT NULL");
    // Every key held back, or waiting for its next job, is looked at now (rows locked in order of key).
    await this.sql.query(
      "UPDATE concurrency_keys SET next_at = now() WHERE key IN (SELECT key FROM concurrency_keys WHERE next_at > now() ORDER BY key FOR UPDATE) AND next_at > now()",
    );
  }

  /**
   * Leases jobs another queue handed out, where the record agrees they are free and due. The
   * others come back with when they are free (null: no such job any more).
   */
  async takeLeases(jobIds: string[], owner: string, leaseMs: number): Promise<{ leased: JobRecord[]; busy: Array<{ id: string; freeInMs: number | null }> }> {
    if (jobIds.length === 0) return { leased: [], busy: [] };
    const ids = JSON.stringify(jobIds);
    const leased = (
      await this.sql.query(
        `UPDATE jobs SET locked_by = $2, locked_until = ${LEASE}, claims = claims + 1
         WHERE id = ANY (${JOB_IDS}) AND concurrency IS NULL
           AND run_at <= now() AND (locked_until IS NULL OR locked_until < now())
         RETURNING *`,
        [ids, owner, leaseMs],
      )
    ).map(toJob);
    if (leased.length === jobIds.length) return { leased, busy: [] };
    const got = new Set(leased.map((job) => job.id));
    const rest = jobIds.filter((id) => !got.has(id));
    const rows = await this.sql.query<{ id: string; ms: number | string }>(
      `SELECT id::text, greatest(0, extract(epoch FROM (greatest(run_at, coalesce(locked_until, run_at)) - now())) * 1000) AS ms
       FROM jobs WHERE id = ANY (${JOB_IDS})`,
      [JSON.stringify(rest)],
    );
    const found = new Map(rows.map((row) => [String(row.id), Number(row.ms)]));
    return { leased, busy: rest.map((id) => ({ id, freeInMs: found.get(id) ?? null })) };
  }

  /**
   * Jobs with an ID after `afterId` (in ID order), free or with an expired lease, older than
   * `minAgeMs`: those another queue hands out (invocations with concurrency keys are not).
   */
  async listFree(afterId: string | null, limit: number, minAgeMs: number): Promise<JobRecord[]> {
    const rows = await this.sql.query(
      `SELECT * FROM jobs
       WHERE id > $1 AND concurrency IS NULL AND created_at < now() - make_interval(secs => $2::float8 / 1000) AND (locked_until IS NULL OR locked_until < now())
       ORDER BY id LIMIT $3`,
      [afterId ?? "0", minAgeMs, limit],
    );
    return rows.map(toJob);
  }
}
