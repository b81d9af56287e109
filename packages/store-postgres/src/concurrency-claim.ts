/**
 * Claims of invocations with concurrency limits, from the record with either queue: the count of
 * slots in use must be exact, and only the record holds every lease (Redis may lose anything).
 *
 * An invocation waiting for a slot is a free job carrying its run's keys. Each key with such
 * jobs has a row in `concurrency_keys` saying when a claim should look at it next. A claim locks
 * the rows of the keys it looks at (`SKIP LOCKED`: a key another executor is counting is left to
 * it), then reads the slots in use, which no one else can grant meanwhile, and leases jobs in
 * order of due time while each of their keys has room. Nothing in it ever waits on a lock, so it
 * cannot deadlock with the commits that queue and complete jobs.
 *
 * A continuation keeps its slot: it is written leased in the commit that deletes the invocation
 * before it, so every count sees one of the two. A key whose slots are all taken is looked at
 * again when one is freed (`slotsFreed`, after the invocation holding it ended) or after
 * {@link FULL_RECHECK_MS} at the latest; `reconcileKeys` makes keys of expired leases due again.
 */
import type { JobRecord } from "@stepwise/engine";
import { idsParam, type SqlClient, type SqlExecutor } from "./sql.ts";
import { JOB_COLUMNS, toJob } from "./rows.ts";

/** How long a key whose slots were all taken waits before a claim counts it again, if no slot is freed sooner. */
export const FULL_RECHECK_MS = 2_000;
/** How long a key is left when another claim held one of a job's other keys. */
const BUSY_RETRY_MS = 20;

/** Keys a claim looks at, however few lanes it has: some of them may turn out full. */
const MIN_KEYS_PER_CLAIM = 16;

const KEYS = idsParam("$1", "text");
/** Free, due jobs whose first (second) key is `q.key`, at most $2, in order, each locked or skipped. */
const waitingBy = (index: 0 | 1) => `
  SELECT x.* FROM unnest(${KEYS}) AS q(key) CROSS JOIN LATERAL (
    SELECT ${JOB_COLUMNS} FROM jobs
    WHERE ${index === 0 ? "concurrency IS NOT NULL" : "concurrency->1 IS NOT NULL"} AND concurrency->${index}->>'key' = q.key
      AND run_at <= now() AND (locked_until IS NULL OR locked_until < now())
    ORDER BY run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) x`;
const CANDIDATES = `${waitingBy(0)} UNION ALL ${waitingBy(1)}`;

/** Slots of keys $1 held now: leased invocations (only invocations carry keys). */
const IN_USE = `
  SELECT s.slot->>'key' AS key, count(*)::int AS used
  FROM jobs j, jsonb_array_elements(j.concurrency) AS s(slot)
  WHERE j.locked_until > now() AND j.concurrency IS NOT NULL AND s.slot->>'key' = ANY (${KEYS})
  GROUP BY 1`;

/** The earliest free job of key `k.key` (through either index), or infinity: nothing waits. */
const EARLIEST_WAITING = `coalesce(least(
    (SELECT min(run_at) FROM jobs WHERE concurrency IS NOT NULL AND concurrency->0->>'key' = k.key AND locked_until IS NULL),
    (SELECT min(run_at) FROM jobs WHERE concurrency->1 IS NOT NULL AND concurrency->1->>'key' = k.key AND locked_until IS NULL)),
  'infinity')`;

/** Leases up to `room` waiting invocations whose keys have room, to `owner`. */
export async function claimKeyed(client: SqlClient, owner: string, room: number, leaseMs: number): Promise<JobRecord[]> {
  if (room <= 0) return [];
  // Most claims find no key due: that costs one statement, and no transaction.
  const due = await client.query("SELECT 1 FROM concurrency_keys WHERE next_at <= now() LIMIT 1", [], { prepare: "stepwise_keys_due" });
  if (due.length === 0) return [];
  return client.transaction(async (tx) => {
    const keys = (
      await tx.query<{ key: string }>("SELECT key FROM concurrency_keys WHERE next_at <= now() ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED", [
        Math.max(room, MIN_KEYS_PER_CLAIM),
      ])
    ).map((row) => row.key);
    if (keys.length === 0) return [];
    const byId = new Map<string, JobRecord>();
    for (const row of await tx.query(CANDIDATES, [JSON.stringify(keys), room])) byId.set(String(row.id), toJob(row));
    const candidates = [...byId.values()].sort((a, b) => a.runAt.getTime() - b.runAt.getTime() || Number(a.id) - Number(b.id));
    const locked = new Set(keys);
    // A job's other key is counted only under its lock too; one another claim holds is skipped for now.
    const others = [...new Set(candidates.flatMap((job) => slotsOf(job).map((slot) => slot.key)))].filter((key) => !locked.has(key));
    if (others.length > 0) {
      const rows = await tx.query<{ key: string }>(`SELECT key FROM concurrency_keys WHERE key = ANY (${KEYS}) FOR UPDATE SKIP LOCKED`, [JSON.stringify(others)]);
      for (const row of rows) locked.add(row.key);
    }
    const used = new Map<string, number>();
    for (const row of await tx.query<{ key: string; used: number }>(IN_USE, [JSON.stringify([...locked])])) used.set(row.key, Number(row.used));

    const chosen: string[] = [];
    const full = new Set<string>();
    const busy = new Set<string>();
    for (const job of candidates) {
      if (chosen.length >= room) break;
      const slots = slotsOf(job);
      if (slots.some((slot) => !locked.has(slot.key))) {
        for (const slot of slots) if (locked.has(slot.key)) busy.add(slot.key);
        continue;
      }
      if (slots.some((slot) => (used.get(slot.key) ?? 0) >= slot.limit)) {
        // Every key of a job held back waits with it: looked at again when a slot frees.
        for (const slot of slots) full.add(slot.key);
        continue;
      }
      for (const slot of slots) used.set(slot.key, (used.get(slot.key) ?? 0) + 1);
      chosen.push(job.id);
    }
    const leased =
      chosen.length === 0
        ? []
        : (
            await tx.query(
              `UPDATE jobs SET locked_by = $2, locked_until = now() + make_interval(secs => $3::float8 / 1000), claims = claims + 1
               WHERE id = ANY (${idsParam("$1", "bigint")}) RETURNING ${JOB_COLUMNS}`,
              [JSON.stringify(chosen), owner, leaseMs],
            )
          ).map(toJob);
    // Out of room: the keys stay due for the next claim. Otherwise each is next looked at when it
    // has something to grant: its earliest waiting job, or a while later when that had no room.
    if (chosen.length < room) {
      await tx.query(
        `UPDATE concurrency_keys k SET next_at = CASE
           WHEN k.key = ANY (${idsParam("$2", "text")}) THEN now() + make_interval(secs => $4::float8 / 1000)
           WHEN k.key = ANY (${idsParam("$3", "text")}) THEN now() + make_interval(secs => $5::float8 / 1000)
           ELSE ${EARLIEST_WAITING} END
         WHERE k.key = ANY (${KEYS})`,
        [JSON.stringify([...locked]), JSON.stringify([...full]), JSON.stringify([...busy].filter((key) => !full.has(key))), FULL_RECHECK_MS, BUSY_RETRY_MS],
      );
    }
    return leased.sort((a, b) => a.runAt.getTime() - b.runAt.getTime());
  });
}

/** Keys whose slot an invocation gave up: runs waiting on them may be claimed at once. */
export async function slotsFreed(sql: SqlExecutor, keys: string[]): Promise<void> {
  if (keys.length === 0) return;
  // Only keys held back for want of room ('infinity': nothing waits there).
  await sql.query(`UPDATE concurrency_keys SET next_at = now() WHERE key = ANY (${KEYS}) AND next_at > now() AND next_at < 'infinity'`, [JSON.stringify(keys)], {
    prepare: "stepwise_slots_freed",
  });
}

/** Milliseconds until a key is due (0 if one is), or null when none is. */
export const NEXT_KEY_DUE = `(SELECT min(next_at) FROM concurrency_keys WHERE next_at < 'infinity')`;

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
     RETURNING (xmax = 0) AS inserted`,
  );
  return rows.filter((row) => row.inserted).length;
}

/** Deletes up to `limit` rows of keys nothing waits on. */
export async function pruneKeys(sql: SqlExecutor, limit: number): Promise<number> {
  const rows = await sql.query(
    `DELETE FROM concurrency_keys WHERE key IN (SELECT key FROM concurrency_keys WHERE next_at = 'infinity' LIMIT $1) AND next_at = 'infinity' RETURNING 1`,
    [limit],
  );
  return rows.length;
}

function slotsOf(job: JobRecord) {
  return job.concurrency ?? [];
}
