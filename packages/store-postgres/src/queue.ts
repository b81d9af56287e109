/**
 * The queue in Postgres. A claim is one statement: due rows whose lease is free or expired,
 * `FOR UPDATE SKIP LOCKED` so concurrent executors never take the same row, leased in the
 * same `UPDATE … RETURNING`. One statement needs no interactive transaction, so it also
 * works over an HTTP driver.
 */
import type { JobRecord, Queue } from "@stepwise/engine";
import type { SqlExecutor } from "./sql.ts";
import { toJob } from "./rows.ts";

export class PgQueue implements Queue {
  /** The jobs table is both the record and the queue. */
  readonly authoritative = true;

  constructor(private readonly sql: SqlExecutor) {}

  /** Jobs are claimable the moment their transaction commits. */
  async publish(): Promise<void> {}

  /** The completing transaction already deleted the row. */
  async forget(): Promise<void> {}

  async reconcile(): Promise<number> {
    return 0;
  }

  async claim(owner: string, limit: number, leaseMs: number): Promise<JobRecord[]> {
    const rows = await this.sql.query(
      `UPDATE jobs SET locked_by = $1, locked_until = now() + make_interval(secs => $3::float8 / 1000), claims = claims + 1
       WHERE id IN (
         SELECT id FROM jobs
         WHERE run_at <= now() AND (locked_until IS NULL OR locked_until < now())
         ORDER BY run_at, id
         LIMIT $2
         FOR UPDATE SKIP LOCKED
       )
       RETURNING *`,
      [owner, limit, leaseMs],
    );
    return rows.map(toJob).sort((a, b) => a.runAt.getTime() - b.runAt.getTime());
  }

  async extendLeases(jobIds: string[], owner: string, leaseMs: number): Promise<void> {
    if (jobIds.length === 0) return;
    await this.sql.query(
      `UPDATE jobs SET locked_until = now() + make_interval(secs => $3::float8 / 1000)
       WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)::bigint) AND locked_by = $2`,
      [JSON.stringify(jobIds), owner, leaseMs],
    );
  }

  async release(jobId: string, owner: string, runAt: Date): Promise<void> {
    await this.sql.query(
      "UPDATE jobs SET locked_by = NULL, locked_until = NULL, run_at = $3 WHERE id = $1 AND locked_by = $2",
      [jobId, owner, runAt.toISOString()],
    );
  }

  async nextDueAt(): Promise<Date | null> {
    const rows = await this.sql.query<{ at: Date | string | null }>(
      "SELECT min(greatest(run_at, coalesce(locked_until, run_at))) AS at FROM jobs",
    );
    const at = rows[0]?.at;
    return at == null ? null : at instanceof Date ? at : new Date(at);
  }

  async releaseAllLeases(): Promise<void> {
    await this.sql.query("UPDATE jobs SET locked_by = NULL, locked_until = NULL WHERE locked_by IS NOT NULL");
  }
}
