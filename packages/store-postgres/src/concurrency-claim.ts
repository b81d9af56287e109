/**
 * Claims of invocations with concurrency limits, from the record with either queue: the count of
 * slots in use must be exact, and only the record holds every lease (Redis may lose anything).
 *
 * An invocation waiting for a slot is a free job carrying its run's keys. Each key with such
 * jobs has a row in `concurrency_keys` saying when a claim should look at it next. A claim locks
 * the rows of the keys it looks at (`SKIP LOCKED`: a key another executor is counting is left to
 * it), then reads the slots in use, which no one else can grant meanwhile, and leases jobs in
 * order of due time while each of their keys has room. A slot is held by every leased
 * invocation, its lease live or run out: a stalled worker may go on, so only a claim that takes
 * its job again (which costs no slot) or its end frees it. Nothing in it ever waits on a lock, so it
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
/** Jobs having a key of $3 (keys found full in this claim): a second look passes over them. */
// (An empty list is a NULL array, so each test is coalesced: NULL would exclude every job.)
const NOT_HELD_BACK = `NOT coalesce(concurrency->0->>'key' = ANY (${idsParam("$3", "text")}), false) AND NOT coalesce(concurrency->1->>'key' = ANY (${idsParam("$3", "text")}), false)`;
/**
 * Due jobs whose first (second) key is `q.key` and that no live lease holds, at most $2 per key, in
 * order, each locked or skipped; none with a key of $3.
 */
const waitingBy = (index: 0 | 1) => `
  SELECT x.* FROM unnest(${KEYS}) AS q(key) CROSS JOIN LATERAL (
    SELECT ${JOB_COLUMNS}, locked_by IS NOT NULL AS held FROM jobs
    WHERE ${index === 0 ? "concurrency IS NOT NULL" : "concurrency->1 IS NOT NULL"} AND concurrency->${index}->>'key' = q.key
      AND run_at <= now() AND (locked_until IS NULL OR locked_until < now()) AND ${NOT_HELD_BACK}
    ORDER BY run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) x`;
/**
 * Invocations of keys $1 whose lease ran out (their worker stalled or died), found through the
 * leases however many jobs wait: each still holds its slots, so it goes first.
 */
const EXPIRED = `
  SELECT x.* FROM (
    SELECT ${JOB_COLUMNS}, true AS held FROM jobs
    WHERE locked_until < now() AND concurrency IS NOT NULL
      AND (concurrency->0->>'key' = ANY (${KEYS}) OR coalesce(concurrency->1->>'key' = ANY (${KEYS}), false))
    FOR UPDATE SKIP LOCKED) x`;
const CANDIDATES = `${waitingBy(0)} UNION ALL ${waitingBy(1)} UNION ALL ${EXPIRED}`;

/**
 * Slots of keys $1 held now: invocations with a lease, live or run out. One whose lease ran out
 * keeps its slots until a claim takes the job again or it ends: its worker may only have stalled
 * and go on (its heartbeat and its commit check the holder, not the time). (`locked_until IS NOT
 * NULL`, set and cleared with the holder, reaches them through the leases' index: `locked_by`
 * would read the whole table, as `test/plans-by-key.test.ts` checks.)
 */
const IN_USE = `
  SELECT s.slot->>'key' AS key, count(*)::int AS used
  FROM jobs j, jsonb_array_elements(j.concurrency) AS s(slot)
  WHERE j.locked_until IS NOT NULL AND j.concurrency IS NOT NULL AND s.slot->>'key' = ANY (${KEYS})
  GROUP BY 1`;

/** The earliest free job of key `k.key` (through either index), or infinity: nothing waits. */
const EARLIEST_WAITING = `coalesce(least(
    (SELECT min(run_at) FROM jobs WHERE concurrency IS NOT NULL AND concurrency->0->>'key' = k.key AND locked_until IS NULL),
    (SELECT min(run_at) FROM jobs WHERE concurrency->1 IS NOT NULL AND concurrency->1->>'key' = k.key AND locked_until IS NULL)),
  'infinity')`;

/** The claim's reads, for the test that checks their plans reach rows through the keys. */
export const KEYED_CLAIM_READS = {
  candidates: CANDIDATES,
  inUse: IN_USE,
  earliestWaiting: `SELECT ${EARLIEST_WAITING} AS next_at FROM concurrency_keys k WHERE k.key = ANY (${KEYS})`,
};

type Candidate = JobRecord & { held: boolean };

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
    const grant = new Grant(tx, keys, room);
    await grant.look(keys, []);
    // Jobs held back by another key that is full may hide, in a key's window, the ones that can
    // go: a second look passes over every job of a key found full.
    const open = keys.filter((key) => !grant.full.has(key));
    if (grant.chosen.length < room && grant.full.size > 0 && open.length > 0) await grant.look(open, [...grant.full]);
    const leased =
      grant.chosen.length === 0
        ? []
        : (
            await tx.query(
              `UPDATE jobs SET locked_by = $2, locked_until = now() + make_interval(secs => $3::float8 / 1000), claims = claims + 1
               WHERE id = ANY (${idsParam("$1", "bigint")}) RETURNING ${JOB_COLUMNS}`,
              [JSON.stringify(grant.chosen), owner, leaseMs],
            )
          ).map(toJob);
    // Out of room: the keys stay due for the next claim. Otherwise each is next looked at when it
    // has something to grant: its earliest waiting job, or a while later when nothing could go.
    if (grant.chosen.length < room) {
      const waitLonger = [...grant.full, ...grant.stuck].filter((key) => grant.locked.has(key));
      await tx.query(
        `UPDATE concurrency_keys k SET next_at = CASE
           WHEN k.key = ANY (${idsParam("$2", "text")}) THEN now() + make_interval(secs => $4::float8 / 1000)
           WHEN k.key = ANY (${idsParam("$3", "text")}) THEN now() + make_interval(secs => $5::float8 / 1000)
           ELSE ${EARLIEST_WAITING} END
         WHERE k.key = ANY (${KEYS})`,
        [JSON.stringify([...grant.locked]), JSON.stringify(waitLonger), JSON.stringify([...grant.busy]), FULL_RECHECK_MS, BUSY_RETRY_MS],
      );
    }
    return leased.sort((a, b) => a.runAt.getTime() - b.runAt.getTime());
  });
}

/** One claim's slots: the keys it holds locked, their slots in use, and what it chose. */
class Grant {
  readonly locked: Set<string>;
  readonly used = new Map<string, number>();
  readonly chosen: string[] = [];
  /** Keys with no slot left for a job that wanted one. */
  readonly full = new Set<string>();
  /** Keys none of whose jobs could go, all held back by another key (looked at again when that one frees). */
  readonly stuck = new Set<string>();
  /** Keys whose job waits on another key that another claim holds: looked at again soon. */
  readonly busy = new Set<string>();
  private readonly seen = new Set<string>();

  constructor(
    private readonly tx: SqlExecutor,
    keys: string[],
    private readonly room: number,
  ) {
    this.locked = new Set(keys);
  }

  /** Reads the candidates of `keys` (none with a key of `passOver`), counts their keys' slots, and chooses. */
  async look(keys: string[], passOver: string[]): Promise<void> {
    const rows = await this.tx.query(CANDIDATES, [JSON.stringify(keys), this.room, JSON.stringify(passOver)]);
    const byId = new Map<string, Candidate>();
    for (const row of rows) if (!this.seen.has(String(row.id))) byId.set(String(row.id), { ...toJob(row), held: row.held === true });
    // Jobs still holding their slots first (their lease ran out), then in order of due time.
    const candidates = [...byId.values()].sort((a, b) => Number(b.held) - Number(a.held) || a.runAt.getTime() - b.runAt.getTime() || Number(a.id) - Number(b.id));
    // A job's other key is counted only under its lock too; one another claim holds is passed over for now.
    const others = [...new Set(candidates.flatMap((job) => slotsOf(job).map((slot) => slot.key)))].filter((key) => !this.locked.has(key));
    if (others.length > 0) {
      const got = await this.tx.query<{ key: string }>(`SELECT key FROM concurrency_keys WHERE key = ANY (${KEYS}) FOR UPDATE SKIP LOCKED`, [JSON.stringify(others)]);
      for (const row of got) this.locked.add(row.key);
    }
    const uncounted = [...this.locked].filter((key) => !this.used.has(key));
    for (const key of uncounted) this.used.set(key, 0);
    for (const row of await this.tx.query<{ key: string; used: number }>(IN_USE, [JSON.stringify(uncounted)])) this.used.set(row.key, Number(row.used));
    const granted = new Set<string>();
    const refused = new Set<string>();
    for (const job of candidates) {
      this.seen.add(job.id);
      if (this.chosen.length >= this.room) break;
      const slots = slotsOf(job);
      if (slots.some((slot) => !this.locked.has(slot.key))) {
        for (const slot of slots) if (this.locked.has(slot.key)) this.busy.add(slot.key);
        continue;
      }
      // A job whose lease ran out already holds its slots: taking it again takes none.
      const over = job.held ? [] : slots.filter((slot) => (this.used.get(slot.key) ?? 0) >= slot.limit);
      if (over.length > 0) {
        for (const slot of over) this.full.add(slot.key);
        for (const slot of slots) refused.add(slot.key);
        continue;
      }
      if (!job.held) for (const slot of slots) this.used.set(slot.key, (this.used.get(slot.key) ?? 0) + 1);
      for (const slot of slots) granted.add(slot.key);
      this.chosen.push(job.id);
    }
    for (const key of refused) if (!granted.has(key)) this.stuck.add(key);
    for (const key of granted) this.stuck.delete(key);
  }
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
