/**
 * Live messages in the record (`run_messages`, see schema.sql): what runs publish for their
 * streams, numbered 1, 2, 3, … per run, kept an hour and the last 1,000 per run.
 */
import { MAX_KEPT_MESSAGES, MESSAGE_RETENTION_MS } from "@stepwise/protocol";
import type { StoredRunMessage } from "@stepwise/engine";
import type { SqlClient, SqlExecutor } from "./sql.ts";

/** The advisory lock space of publishes, one lock per run. */
const MESSAGE_LOCKS = 7153;

/** Appends a run's messages in order; the number of the last (see `Store.appendRunMessages`). */
export function appendRunMessages(client: SqlClient, runId: string, messages: ReadonlyArray<{ topic: string; data: string }>): Promise<number> {
  return client.transaction(async (sql) => {
    // Publishes of one run (its invocations may overlap) take turns: each numbers its messages
    // after the last committed, so a reader never sees n+1 before n commits.
    await sql.query(`SELECT pg_advisory_xact_lock(${MESSAGE_LOCKS}, hashtext($1))`, [runId]);
    const [row] = await sql.query<{ last: number | string }>(
      `WITH base AS (SELECT coalesce(max(seq), 0) AS seq FROM run_messages WHERE run_id = $1),
       added AS (
         INSERT INTO run_messages (run_id, seq, topic, data)
         SELECT $1, base.seq + e.n, e.m->>'topic', e.m->>'data'
         FROM base, jsonb_array_elements($2::jsonb) WITH ORDINALITY AS e(m, n)
         RETURNING seq)
       SELECT max(seq) AS last FROM added`,
      [runId, JSON.stringify(messages)],
    );
    const last = Number(row?.last ?? 0);
    if (last > MAX_KEPT_MESSAGES) await sql.query("DELETE FROM run_messages WHERE run_id = $1 AND seq <= $2", [runId, last - MAX_KEPT_MESSAGES]);
    return last;
  });
}

/** A run's messages numbered after `afterSeq`, oldest first, at most `limit`. */
export async function readRunMessages(client: SqlClient, runId: string, afterSeq: number, limit: number): Promise<StoredRunMessage[]> {
  const rows = await client.query<{ seq: number | string; topic: string; data: string; published_at: string | Date }>(
    "SELECT seq, topic, data, published_at FROM run_messages WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    [runId, afterSeq, limit],
  );
  return rows.map((row) => ({ seq: Number(row.seq), topic: row.topic, data: row.data, publishedAt: new Date(row.published_at) }));
}

/**
 * Deletes up to `limit` messages older than the retention, whatever their run does; but a run's
 * last message stays while the run does, since the next one is numbered after it (a reader that
 * resumes after n must never get a new n). Runs in the pruner's transaction.
 */
export async function pruneRunMessages(sql: SqlExecutor, limit: number): Promise<void> {
  await sql.query(
    `DELETE FROM run_messages WHERE (run_id, seq) IN (
       SELECT m.run_id, m.seq FROM run_messages m WHERE m.published_at < now() - make_interval(secs => $1::float8 / 1000)
         AND m.seq < (SELECT max(l.seq) FROM run_messages l WHERE l.run_id = m.run_id)
       ORDER BY m.published_at LIMIT $2)`,
    [MESSAGE_RETENTION_MS, limit],
  );
}
