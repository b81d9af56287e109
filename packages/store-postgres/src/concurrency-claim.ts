/**
 * Claims of invocations with concurrency limits, from the record with either queue: the count of
 * slots in use must be exact, and only the record holds every lease (Redis may lose anything).
 *
 * An invocation waiting for a slot is a free job carrying its run's keys. Each key with such
 * jobs has a row in `concurrency_keys` saying when a claim should look at it next; the commit
 * that queues the job leaves a wake (`concurrency_wakes`) that the next claim folds into that
 * row, so commits never hold a key's row. A claim locks the rows of the keys it looks at (`SKIP
 * LOCKED`: a key another executor is counting is left to it), then reads the slots in use,
 * which no one else can grant meanwhile, and leases jobs in order of due time while each of
 * their keys has room. A slot is held by every leased invocation, its lease live or run out: a
 * stalled worker may go on, so only a claim that takes its job again (which costs no slot) or
 * its end frees it. A claim never waits on a lock (the wakes of a key someone holds are left
 * for a later claim), so it cannot deadlock with the commits that queue and complete jobs, nor
 * keep another claim waiting.
 *
 * The claim itself is `stepwise_claim_keyed` in schema.sql, a function in the database: it takes
 * several reads, each after the locks taken before it (a statement of several parts reads one
 * snapshot, taken before its locks, so it could miss slots another claim granted meanwhile).
 * As an interactive transaction that was eight round trips per claim, on the path of every
 * keyed run's start; as a function it is one, and it needs no transaction on the driver's side.
 *
 * A continuation keeps its slot: it is written leased in the commit that deletes the invocation
 * before it, so every count sees one of the two. A key whose slots are all taken is looked at
 * again when one is freed (`slotsFreed`, after the invocation holding it ended) or after
 * {@link FULL_RECHECK_MS} at the latest; `reconcileKeys` makes keys of expired leases due again.
 */
import type { JobRecord } from "@stepwise/engine";
import { idsParam, type SqlExecutor } from "./sql.ts";
import { JOB_COLUMNS, toJob } from "./rows.ts";

/** How long a key whose slots were all taken waits before a claim counts it again, if no slot is freed sooner. */
export const FULL_RECHECK_MS = 2_000;
/** How long a key is left when another claim held one of a job's other keys. */
const BUSY_RETRY_MS = 20;

/** Keys a claim looks at, however few lanes it has: some of them may turn out full. */
const MIN_KEYS_PER_CLAIM = 16;

const KEYS = idsParam("$1", "text");

/**
 * Leases up to `room` waiting invocations whose keys have room, to `owner`: one call of
 * `stepwise_claim_keyed` (schema.sql), so one round trip, on every driver.
 */
export async function claimKeyed(client: SqlExecutor, owner: string, room: number, leaseMs: number): Promise<JobRecord[]> {
  if (room <= 0) return [];
  const rows = await client.query(
    `SELECT ${JOB_COLUMNS} FROM stepwise_claim_keyed($1, $2, $3, $4, $5, $6)`,
    [owner, room, leaseMs, MIN_KEYS_PER_CLAIM, FULL_RECHECK_MS, BUSY_RETRY_MS],
    { prepare: "stepwise_claim_keyed" },
  );
  return rows.map(toJob).sort((a, b) => a.runAt.getTime() - b.runAt.getTime());
}

/**
 * Keys whose slot an invocation gave up: runs waiting on them may be claimed at once. Returns
 * how many of the keys a claim may now find something to grant for: made due here, due
 * already (another executor's claim ran out of room on it), or any wake not folded yet. Zero
 * means nothing waits on them, as in a burst that never fills its keys.
 */
export async function slotsFreed(sql: SqlExecutor, keys: string[]): Promise<number> {
  if (keys.length === 0) return 0;
  // Only keys held back for want of room ('infinity': nothing waits there). Locked in order of
  // key, as every writer of several keys' rows locks them, so two of them never deadlock.
  const [row] = await sql.query<{ due: number | string }>(
    `WITH made AS (
       UPDATE concurrency_keys SET next_at = now()
       WHERE key IN (SELECT key FROM concurrency_keys WHERE key = ANY (${KEYS}) AND next_at > now() AND next_at < 'infinity' ORDER BY key FOR UPDATE)
         AND next_at > now() AND next_at < 'infinity'
       RETURNING key)
     SELECT (SELECT count(*) FROM made)
          + (SELECT count(*) FROM concurrency_keys WHERE key = ANY (${KEYS}) AND next_at <= now())
          + (CASE WHEN EXISTS (SELECT 1 FROM concurrency_wakes) THEN 1 ELSE 0 END) AS due`,
    [JSON.stringify(keys)],
    { prepare: "stepwise_slots_freed_v2" },
  );
  return Number(row?.due ?? 0);
}

/** When a key is next due (a wake no claim folded yet counts as due at its time), or NULL. */
export const NEXT_KEY_DUE = `least((SELECT min(next_at) FROM concurrency_keys WHERE next_at < 'infinity'), (SELECT min(run_at) FROM concurrency_wakes))`;

/**
 * Makes keys due that have a job to grant now whatever their row says: an invocation whose lease
 * ran out (its executor died), or one whose key has no row (which only a lost write could cause:
 * those are counted and returned).
 */
export async function reconcileKeys(sql: SqlExecutor): Promise<number> {
  const rows = await sql.query<{ inserted: boolean }>(
    `INSERT INTO concurrency_keys AS k (key, next_at)
     SELECT s.slot->>'key', now() FROM jobs j, jsonb_array_elements(j.concurrency) AS s(slot)
     WHERE j.concurrency IS NOT NULL AND j.run_at <= now() AND (j.locked_until IS NULL OR j.locked_until < now())
     GROUP BY 1 ORDER BY 1
     ON CONFLICT (key) DO UPDATE SET next_at = now() WHERE k.next_at > now()
     -- A key whose wake no claim folded yet has no row for good reason: not a lost write.
     RETURNING (xmax = 0 AND NOT EXISTS (SELECT 1 FROM concurrency_wakes w WHERE w.key = k.key)) AS inserted`,
  );
  return rows.filter((row) => row.inserted).length;
}

/** Deletes up to `limit` rows of keys nothing waits on. */
export async function pruneKeys(sql: SqlExecutor, limit: number): Promise<number> {
  const rows = await sql.query(
    // A row someone holds (a claim counting its key, say) is left for the next round. The keys
    // are picked once, as an array: a picking subquery in `IN (…)` may be run again for every
    // row, each run taking the next rows it finds unlocked (see the plain claim in queue.ts;
    // this statement is planned at every call, so less exposed, but its plan follows the same
    // statistics).
    `DELETE FROM concurrency_keys WHERE key = ANY (ARRAY(SELECT key FROM concurrency_keys WHERE next_at = 'infinity' LIMIT $1 FOR UPDATE SKIP LOCKED)) AND next_at = 'infinity' RETURNING 1`,
    [limit],
  );
  return rows.length;
}
