/**
 * What the store forgets: ended runs with their steps, events no run holds, app versions no run
 * needs and run messages past their keep (by retention, one pruner at a time across executors),
 * and flow-control state that holds nothing back any more (whatever the retention).
 */
import { TERMINAL_RUN_STATUSES } from "@stepwise/engine";
import { pruneKeys } from "./concurrency-claim.ts";
import { pruneRunMessages } from "./run-messages.ts";
import type { SqlClient } from "./sql.ts";

/** Advisory lock key, arbitrary but fixed: one pruner at a time. */
const PRUNE_LOCK = 7151;
/** The statuses of ended runs, as a SQL list: `('completed', 'failed', …)`. */
const ENDED = `(${TERMINAL_RUN_STATUSES.map((status) => `'${status}'`).join(", ")})`;

/** Ended runs, events no run holds and app versions no run needs, older than `olderThanMs`: `limit` of each a round. */
export async function pruneExpired(client: SqlClient, olderThanMs: number, limit: number): Promise<{ runs: number; events: number }> {
  return client.transaction(async (sql) => {
    // One pruner at a time across executors; the others skip this round.
    const [lock] = await sql.query<{ ok: boolean }>(`SELECT pg_try_advisory_xact_lock(${PRUNE_LOCK}) AS ok`);
    if (!lock?.ok) return { runs: 0, events: 0 };
    const cutoff = "now() - make_interval(secs => $1::float8 / 1000)";
    // Steps and matchers go with their run (ON DELETE CASCADE); an ended run has no jobs.
    const runs = await sql.query(
      `DELETE FROM runs WHERE id IN (
         SELECT id FROM runs WHERE ended_at < ${cutoff} AND status IN ${ENDED} ORDER BY ended_at LIMIT $2)
       RETURNING 1`,
      [olderThanMs, limit],
    );
    // An event goes once no run it started or is batched in remains (a live run keeps its
    // events, however old).
    const events = await sql.query(
      `DELETE FROM events WHERE id IN (
         SELECT e.id FROM events e WHERE e.received_at < ${cutoff}
           AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id)
           AND NOT EXISTS (SELECT 1 FROM run_events b WHERE b.event_id = e.id)
         ORDER BY e.received_at LIMIT $2)
       RETURNING 1`,
      [olderThanMs, limit],
    );
    await pruneRunMessages(sql, limit);
    // Versions no run needs any more: not the app's current one, and no live run started on it.
    await sql.query(
      `DELETE FROM app_versions v WHERE v.synced_at < ${cutoff}
         AND v.version IS DISTINCT FROM (SELECT a.version FROM apps a WHERE a.id = v.app_id)
         AND NOT EXISTS (
           SELECT 1 FROM runs r JOIN functions f ON f.id = r.function_id
           WHERE f.app_id = v.app_id AND r.app_version = v.version AND r.status NOT IN ${ENDED})`,
      [olderThanMs],
    );
    return { runs: runs.length, events: events.length };
  });
}

/** Flow-control rows that hold nothing back any more; how many went. */
export async function pruneFlowControl(client: SqlClient, limit: number): Promise<number> {
  // Flow-control state that holds nothing back: a rate limit or throttle whose time has come
  // round, an expired idempotency key, a singleton key whose run ended, a debounce or batch
  // whose run started or ended, a concurrency key nothing waits on.
  const heldByRun = (table: string, over: string) =>
    pruneKeyed(client, table, "run_id", `SELECT t.function_id, t.key, t.run_id FROM ${table} t LEFT JOIN runs r ON r.id = t.run_id WHERE r.id IS NULL OR ${over} LIMIT $1`, limit);
  const pruned = await Promise.all([
    pruneKeyed(client, "rate_limits", "tat", "SELECT function_id, key, tat FROM rate_limits WHERE tat < now() ORDER BY tat LIMIT $1", limit),
    pruneKeyed(client, "throttles", "tat", "SELECT function_id, key, tat FROM throttles WHERE tat < now() ORDER BY tat LIMIT $1", limit),
    pruneKeyed(client, "idempotency_keys", "expires_at", "SELECT function_id, key, expires_at FROM idempotency_keys WHERE expires_at < now() ORDER BY expires_at LIMIT $1", limit),
    heldByRun("singletons", `r.status IN ${ENDED}`),
    heldByRun("debounces", "r.status <> 'queued'"),
    heldByRun("batches", "r.status <> 'queued'"),
    pruneKeys(client, limit),
  ]);
  return pruned.reduce((sum, n) => sum + n, 0);
}

/**
 * Deletes the rows of `table` (keyed by function and key) that `select` names, with the value
 * of `version` it saw: a row an event changed meanwhile (a new run took the key, a start moved
 * the time) is no longer the one selected, and stays. How many went.
 */
async function pruneKeyed(client: SqlClient, table: string, version: string, select: string, limit: number): Promise<number> {
  return (await client.query(`DELETE FROM ${table} WHERE (function_id, key, ${version}) IN (${select}) RETURNING 1`, [limit])).length;
}
