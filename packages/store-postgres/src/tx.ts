/**
 * The executor's unit of work in SQL: one statement per operation, all run on the executor
 * given (a transaction's, or the client's for plain reads). Changes to a run are written by the
 * one encoder in `change-sql.ts`.
 */
import { cronJobRunId, isTerminal, type BatchPlace, type BatchPlacement, type CronTick, type PendingHere, type EventRecord, type Fence, type JobRecord, type MatcherRecord, type NewRunWrite, type RunChange, type RunRecord, type RunState, type StepRecord, type StoreTx, type WriteResult } from "@stepwise/engine";
import { writeChange, writeNewRuns } from "./change-sql.ts";
import type { SqlExecutor } from "./sql.ts";
import { JOB_COLUMNS, json, toEvent, toJob, toMatcher, toRun, toStep } from "./rows.ts";

/** Advisory lock class for event names: ingest holds them shared, a wait opening holds them exclusive. */
const EVENT_NAME_LOCKS = 7152;
/** What `toMatcher` reads (named, not *: a prepared statement's result type must not change when a later schema adds a column). */
const MATCHER_COLUMNS = "run_id, step_id, kind, event_name, match_path, match_value, if_expr, expires_at";
/** Events read at a time by a new wait's look-back. */
const LOOKBACK_PAGE = 500;

/** Reads shared by transactions and the store. */
export class PgReader {
  constructor(protected readonly sql: SqlExecutor) {}

  async getRun(runId: string): Promise<RunRecord | null> {
    const rows = await this.sql.query("SELECT * FROM runs WHERE id = $1", [runId]);
    return rows[0] ? toRun(rows[0]) : null;
  }

  async listSteps(runId: string, options: { ids?: readonly string[] } = {}): Promise<StepRecord[]> {
    const rows = options.ids
      ? await this.sql.query("SELECT * FROM steps WHERE run_id = $1 AND id IN (SELECT jsonb_array_elements_text($2::jsonb)) ORDER BY position, id", [runId, JSON.stringify(options.ids)])
      : await this.sql.query("SELECT * FROM steps WHERE run_id = $1 ORDER BY position, id", [runId]);
    return rows.map(toStep);
  }

  async getEvent(eventId: string): Promise<EventRecord | null> {
    const rows = await this.sql.query("SELECT * FROM events WHERE id = $1", [eventId]);
    return rows[0] ? toEvent(rows[0]) : null;
  }

  /**
   * Steps and event of a run, in one statement (for a run read or just locked). Outputs over
   * `maxOutputBytes` stay in the store: their steps carry `outputBytes` instead.
   */
  protected async readRest(run: RunRecord, maxOutputBytes?: number): Promise<RunState> {
    const [row] = await this.sql.query<{ steps: Array<Record<string, unknown>>; event: Record<string, unknown> | null; batch: Array<Record<string, unknown>> | null }>(
      maxOutputBytes === undefined
        ? `SELECT (SELECT coalesce(json_agg(s ORDER BY s.position, s.id), '[]'::json) FROM steps s WHERE s.run_id = $1) AS steps,
                  (SELECT row_to_json(e) FROM events e WHERE e.id = $2) AS event, ${BATCH_EVENTS}`
        : `SELECT (SELECT coalesce(json_agg(s ORDER BY s.position, s.id), '[]'::json) FROM (
                    SELECT run_id, id, name, kind, position, status, error, attempts, retry_policy, usage, wake_at, started_at, ended_at,
                           CASE WHEN octet_length(output) > $3 THEN NULL ELSE output END AS output,
                           CASE WHEN octet_length(output) > $3 THEN octet_length(output) END AS output_bytes
                    FROM steps WHERE run_id = $1) s) AS steps,
                  (SELECT row_to_json(e) FROM events e WHERE e.id = $2) AS event, ${BATCH_EVENTS}`,
      maxOutputBytes === undefined ? [run.id, run.eventId] : [run.id, run.eventId, maxOutputBytes],
      // The result is three json columns whatever columns the tables gain, so the statements can stay prepared.
      { prepare: maxOutputBytes === undefined ? "stepwise_read_run_v2" : "stepwise_read_run_capped_v2" },
    );
    if (!row?.event) throw new Error(`run ${run.id}: its event ${run.eventId} is missing from the store`);
    const state: RunState = { run, steps: row.steps.map(toStep), event: toEvent(row.event) };
    if (row.batch) {
      const missing = row.batch.findIndex((event) => event.id === null);
      if (missing >= 0) throw new Error(`run ${run.id}: event ${missing} of its batch is missing from the store`);
      state.events = row.batch.map(toEvent);
    }
    return state;
  }
}

/**
 * A batched run's events in order (NULL for a run not started as a batch: it has no rows in
 * run_events). An event gone from the store comes back as nulls, and is refused above.
 */
const BATCH_EVENTS = `(SELECT json_agg(json_build_object('id', e.id, 'name', e.name, 'data', e.data, 'ts', e.ts) ORDER BY b.position)
  FROM run_events b LEFT JOIN events e ON e.id = b.event_id WHERE b.run_id = $1) AS batch`;

export class PgTx extends PgReader implements StoreTx {
  async completeJob(fence: Fence): Promise<{ readyAt: Date } | null> {
    // ready_at is when the job first became due; a job given back and claimed again keeps it.
    const rows = await this.sql.query<{ ready_at: Date | string }>(
      `DELETE FROM jobs WHERE id = $1
         AND CASE WHEN $3::boolean THEN run_at <= now() AND (locked_until IS NULL OR locked_until < now()) ELSE locked_by = $2 END
       RETURNING coalesce(ready_at, greatest(created_at, run_at)) AS ready_at`,
      [fence.jobId, fence.owner, fence.unclaimed ?? false],
      { prepare: "stepwise_complete_job" },
    );
    const readyAt = rows[0]?.ready_at;
    return readyAt === undefined ? null : { readyAt: readyAt instanceof Date ? readyAt : new Date(readyAt) };
  }

  async reserveIdempotencyKey(functionId: string, key: string, runId: string, ttlMs: number): Promise<string> {
    // Taken when new or expired; otherwise the row is locked and left as it is, and read back.
    const [row] = await this.sql.query<{ run_id: string; taken: boolean }>(
      `INSERT INTO idempotency_keys AS k (function_id, key, run_id, expires_at)
       VALUES ($1, $2, $3, now() + make_interval(secs => $4::float8 / 1000))
       ON CONFLICT (function_id, key) DO UPDATE SET run_id = EXCLUDED.run_id, expires_at = EXCLUDED.expires_at
         WHERE k.expires_at <= now()
       RETURNING run_id`,
      [functionId, key, runId, ttlMs],
    );
    if (row) return row.run_id;
    const [held] = await this.sql.query<{ run_id: string }>("SELECT run_id FROM idempotency_keys WHERE function_id = $1 AND key = $2", [functionId, key]);
    return held?.run_id ?? runId;
  }

  async takeRateLimit(functionId: string, key: string, intervalMs: number, toleranceMs: number): Promise<boolean> {
    // The time is read once the key's row is locked (clock_timestamp, not now(): that is when
    // this transaction began, and one that began first but locked second would find the
    // other's start ahead of it by those milliseconds, and be refused at the limit's edge).
    const rows = await this.sql.query(
      `INSERT INTO rate_limits AS r (function_id, key, tat) VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3::float8 / 1000))
       ON CONFLICT (function_id, key) DO UPDATE SET tat = greatest(r.tat, clock_timestamp()) + make_interval(secs => $3::float8 / 1000)
         WHERE greatest(r.tat, clock_timestamp()) <= clock_timestamp() + make_interval(secs => $4::float8 / 1000)
       RETURNING 1`,
      [functionId, key, intervalMs, toleranceMs],
    );
    return rows.length > 0;
  }

  async takeThrottle(functionId: string, key: string, intervalMs: number, toleranceMs: number, maxDelayMs?: number): Promise<number | null> {
    // The start is at max(now, tat - tolerance) and tat moves to max(tat, now) + interval; from
    // the new tat alone the start is max(now, tat - interval - tolerance), both for a new row and
    // an old one (see docs/decisions.md). A start later than $5 is not taken.
    const rows = await this.sql.query<{ delay_ms: number | string }>(
      `INSERT INTO throttles AS t (function_id, key, tat) VALUES ($1, $2, now() + make_interval(secs => $3::float8 / 1000))
       ON CONFLICT (function_id, key) DO UPDATE SET tat = greatest(t.tat, now()) + make_interval(secs => $3::float8 / 1000)
         WHERE $5::float8 IS NULL OR extract(epoch FROM (greatest(t.tat, now()) - now())) * 1000 - $4::float8 <= $5::float8
       RETURNING greatest(0, extract(epoch FROM (tat - now())) * 1000 - $3::float8 - $4::float8) AS delay_ms`,
      [functionId, key, intervalMs, toleranceMs, maxDelayMs ?? null],
    );
    return rows.length === 0 ? null : Number(rows[0]!.delay_ms);
  }

  async takeSingleton(functionId: string, key: string, runId: string, force: boolean, pendingHere: PendingHere): Promise<string | null> {
    // First the key's row, locked (inserted: taken). The holder's status is read by a later
    // statement, whose snapshot is taken after that lock: a run that took the key in a
    // transaction committed meanwhile is seen, with its run. A holder this transaction started
    // is not in the record yet: the caller knows it is live.
    const [row] = await this.sql.query<{ run_id: string; inserted: boolean }>(
      `INSERT INTO singletons AS s (function_id, key, run_id) VALUES ($1, $2, $3)
       ON CONFLICT (function_id, key) DO UPDATE SET run_id = s.run_id
       RETURNING run_id, (xmax = 0) AS inserted`,
      [functionId, key, runId],
    );
    if (!row || row.inserted) return null;
    let live = pendingHere(row.run_id);
    if (live === undefined) {
      const [holder] = await this.sql.query<{ status: RunRecord["status"] }>("SELECT status FROM runs WHERE id = $1", [row.run_id]);
      live = holder !== undefined && !isTerminal(holder.status);
    }
    if (live && !force) return row.run_id;
    await this.sql.query("UPDATE singletons SET run_id = $3 WHERE function_id = $1 AND key = $2", [functionId, key, runId]);
    return live ? row.run_id : null;
  }

  async takeDebounce(functionId: string, key: string, runId: string, pendingHere: PendingHere): Promise<{ replaces: string | null; openedMsAgo: number }> {
    // The key's row first, locked: two events of one key are decided one after the other.
    const [row] = await this.sql.query<{ run_id: string; inserted: boolean; age_ms: number | string }>(
      `INSERT INTO debounces AS d (function_id, key, run_id, opened_at) VALUES ($1, $2, $3, now())
       ON CONFLICT (function_id, key) DO UPDATE SET run_id = d.run_id
       RETURNING run_id, (xmax = 0) AS inserted, greatest(0, extract(epoch FROM (now() - opened_at)) * 1000) AS age_ms`,
      [functionId, key, runId],
    );
    if (!row || row.inserted) return { replaces: null, openedMsAgo: 0 };
    const pending = pendingHere(row.run_id) ?? (await this.holdUnstarted(row.run_id));
    await this.sql.query(`UPDATE debounces SET run_id = $3${pending ? "" : ", opened_at = now()"} WHERE function_id = $1 AND key = $2`, [functionId, key, runId]);
    return pending ? { replaces: row.run_id, openedMsAgo: Number(row.age_ms) } : { replaces: null, openedMsAgo: 0 };
  }

  async placeInBatch(place: BatchPlacement, pendingHere: PendingHere): Promise<BatchPlace> {
    const { functionId, key, runId, eventId, bytes, maxSize, maxBytes } = place;
    // The key's row first, locked: two events of one key are placed one after the other.
    const [row] = await this.sql.query<{ run_id: string; size: number; bytes: number | string; inserted: boolean }>(
      `INSERT INTO batches AS b (function_id, key, run_id, size, bytes, opened_at) VALUES ($1, $2, $3, 1, $4, now())
       ON CONFLICT (function_id, key) DO UPDATE SET run_id = b.run_id
       RETURNING run_id, size, bytes, (xmax = 0) AS inserted`,
      [functionId, key, runId, bytes],
    );
    if (!row) throw new Error(`batch of ${functionId}: its row was neither written nor found`);
    const open = async (closed?: string): Promise<BatchPlace> => {
      if (!row.inserted) await this.sql.query("UPDATE batches SET run_id = $3, size = 1, bytes = $4, opened_at = now() WHERE function_id = $1 AND key = $2", [functionId, key, runId, bytes]);
      await this.sql.query("INSERT INTO run_events (run_id, position, event_id) VALUES ($1, 0, $2)", [runId, eventId]);
      const full = maxSize <= 1;
      if (full) await this.sql.query("DELETE FROM batches WHERE function_id = $1 AND key = $2", [functionId, key]);
      return { runId, size: 1, full, ...(closed !== undefined && { closed }) };
    };
    if (row.inserted) return open();
    const holder = row.run_id;
    if (!(pendingHere(holder) ?? (await this.holdUnstarted(holder)))) return open();
    // No room for this event's bytes: the batch starts as it is, and this event opens the next.
    if (Number(row.bytes) + bytes > maxBytes) return open(holder);
    const size = Number(row.size) + 1;
    await this.sql.query("INSERT INTO run_events (run_id, position, event_id) VALUES ($1, $2, $3)", [holder, size - 1, eventId]);
    const full = size >= maxSize;
    await this.sql.query(
      full ? "DELETE FROM batches WHERE function_id = $1 AND key = $2" : "UPDATE batches SET size = $3, bytes = bytes + $4 WHERE function_id = $1 AND key = $2",
      full ? [functionId, key] : [functionId, key, size, bytes],
    );
    return { runId: holder, size, full };
  }

  /**
   * Whether run `runId` is still waiting for its first invocation, never handed out. The run is
   * locked first, then that job (the order every transaction takes them: a cancel holding the
   * run waits for nothing of this one), both until this transaction ends, so no claim takes the
   * job meanwhile. A claim holding the job is waited for: if it took the job, the run is out.
   */
  private async holdUnstarted(runId: string): Promise<boolean> {
    const [run] = await this.sql.query<{ status: string; held: boolean }>("SELECT status, paused_by = 'function' AS held FROM runs WHERE id = $1 FOR UPDATE", [runId]);
    if (run?.status !== "queued") return false;
    // Held by its function's pause (no job at all): it has not started, and will start with what it holds.
    if (run.held) return true;
    const rows = await this.sql.query(
      `SELECT 1 FROM jobs WHERE run_id = $1 AND kind = 'invoke' AND step_id IS NULL AND claims = 0 AND locked_until IS NULL FOR UPDATE`,
      [runId],
    );
    return rows.length > 0;
  }

  async queueCronTick(tick: CronTick): Promise<JobRecord | null> {
    // The purpose index (run, kind, step) holds one tick per pattern: a second is not written.
    const rows = await this.sql.query(
      `INSERT INTO jobs (kind, run_id, step_id, run_at, ready_at) VALUES ('cron', $1, $2, $3, $3)
       ON CONFLICT (run_id, kind, coalesce(step_id, '')) DO NOTHING
       RETURNING ${JOB_COLUMNS}`,
      [cronJobRunId(tick.functionId), tick.cron, tick.runAt.toISOString()],
    );
    return rows[0] ? toJob(rows[0]) : null;
  }

  /**
   * Locks the run (bumping its version, so optimistic writers holding an older snapshot know),
   * then reads its steps and event in a second statement: a statement that waited for the lock
   * would otherwise read the steps as they were before the lock holder's commit.
   */
  async lockRun(runId: string): Promise<RunState | null> {
    const [row] = await this.sql.query("UPDATE runs SET version = version + 1 WHERE id = $1 RETURNING *", [runId]);
    return row ? this.readRest(toRun(row)) : null;
  }

  async writeChange(runId: string, version: number, change: RunChange): Promise<WriteResult> {
    const written = await writeChange(this.sql, runId, version, change);
    // The caller holds the run's lock, so the guard cannot fail unless the run was never locked at `version`.
    if (!written) throw new Error(`run ${runId} is not at version ${version}: lock it in this transaction before writing`);
    return written;
  }

  async insertRunEvents(runId: string, eventIds: readonly string[]): Promise<void> {
    await this.sql.query(
      "INSERT INTO run_events (run_id, position, event_id) SELECT $1, ord - 1, value FROM jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS e(value, ord)",
      [runId, JSON.stringify(eventIds)],
    );
  }

  async insertRuns(runs: NewRunWrite[]): Promise<Map<string, WriteResult>> {
    return writeNewRuns(this.sql, runs);
  }

  async insertEvents(events: EventRecord[]): Promise<EventRecord[]> {
    if (events.length === 0) return [];
    // Arrays travel as one JSON document: the drivers disagree on how to send JS arrays. The
    // shared name locks are taken in name order, in this statement; later statements of this
    // transaction (finding matchers) then see every wait committed before them.
    // received_at is the time of the insert itself (not of the transaction's start), the same
    // clock a new wait's look-back compares with.
    const rows = await this.sql.query<{ id: string }>(
      `WITH input AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS e(id text, name text, data text, ts bigint, traceparent text)),
       locks AS (SELECT pg_advisory_xact_lock_shared(${EVENT_NAME_LOCKS}, hashtext(n.name))
                 FROM (SELECT DISTINCT name FROM input ORDER BY name) n)
       INSERT INTO events (id, name, data, ts, received_at, traceparent)
       SELECT id, name, data, ts, clock_timestamp(), traceparent FROM input WHERE (SELECT count(*) FROM locks) >= 0
       ON CONFLICT (id) DO NOTHING RETURNING id`,
      [JSON.stringify(events.map((e) => ({ id: e.id, name: e.name, data: json(e.data ?? {}), ts: e.ts, traceparent: e.traceparent ?? null })))],
      { prepare: "stepwise_insert_events" },
    );
    const inserted = new Set(rows.map((row) => row.id));
    return events.filter((event) => inserted.has(event.id));
  }

  async lockWaits(eventNames: string[]): Promise<void> {
    if (eventNames.length === 0) return;
    await this.sql.query(
      `SELECT pg_advisory_xact_lock(${EVENT_NAME_LOCKS}, hashtext(n)) FROM (SELECT DISTINCT jsonb_array_elements_text($1::jsonb) AS n ORDER BY 1) names`,
      [JSON.stringify(eventNames)],
    );
  }

  async firstEventSince(name: string, since: Date, until: Date | undefined, accept: (event: EventRecord) => boolean, dataContains?: string): Promise<EventRecord | null> {
    // In pages by arrival (seq), so a flood of other events of the same name cannot hide the one
    // that matches. strpos on the stored text, not a jsonb comparison: data may hold \u0000,
    // which jsonb refuses (and a failed cast would abort the transaction).
    for (let after = "0"; ; ) {
      const rows = await this.sql.query(
        `SELECT * FROM events WHERE name = $1 AND seq > $2 AND received_at >= $3 AND ($4::timestamptz IS NULL OR received_at < $4)
           AND ($5::text IS NULL OR strpos(data, $5) > 0)
         ORDER BY seq LIMIT ${LOOKBACK_PAGE}`,
        [name, after, since.toISOString(), until?.toISOString() ?? null, dataContains ?? null],
      );
      const found = rows.map(toEvent).find(accept);
      if (found) return found;
      if (rows.length < LOOKBACK_PAGE) return null;
      after = String(rows[rows.length - 1]!.seq);
    }
  }

  async findMatchers(eventName: string, matchValue?: string): Promise<MatcherRecord[]> {
    // A matcher past its timeout meets nothing, even before its timeout job resolves it to null.
    const live = "(expires_at IS NULL OR expires_at > clock_timestamp())";
    const rows =
      matchValue === undefined
        ? await this.sql.query(`SELECT ${MATCHER_COLUMNS} FROM matchers WHERE event_name = $1 AND ${live} ORDER BY run_id, step_id`, [eventName], { prepare: "stepwise_find_matchers" })
        : // match_value is JSON text, as JSON.stringify wrote it: equal strings are equal text. Only the
          // executor's own event names are looked up by value, through matchers_reserved_value_idx,
          // whose predicate the query repeats so a generic plan uses it too.
          await this.sql.query(
            `SELECT ${MATCHER_COLUMNS} FROM matchers WHERE event_name LIKE 'stepwise/%' AND event_name = $1 AND match_value = $2 AND ${live} ORDER BY run_id, step_id`,
            [eventName, JSON.stringify(matchValue)],
            { prepare: "stepwise_find_matchers_of_value" },
          );
    return rows.map(toMatcher);
  }

  async now(): Promise<number> {
    const [row] = await this.sql.query<{ ms: string | number }>("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms");
    return Number(row!.ms);
  }

  async dropMatcher(runId: string, stepId: string): Promise<void> {
    await this.sql.query("DELETE FROM matchers WHERE run_id = $1 AND step_id = $2", [runId, stepId]);
  }
}
