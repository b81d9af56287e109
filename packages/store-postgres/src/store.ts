/**
 * The system of record on Postgres (PGlite embedded, or any Postgres through a driver).
 * Every state change runs in one transaction, retried when Postgres aborts it for a
 * deadlock or a serialization failure (two executors touching the same runs), or as one
 * optimistic statement (`change-sql.ts`) that writes nothing when the run moved.
 */
import {
  CRON_JOB_PREFIX,
  cronJobRunId,
  TERMINAL_RUN_STATUSES,
  within,
  type AppRecord,
  type CheckpointResult,
  type CheckpointWrite,
  type CronTick,
  type EventQuery,
  type EventRecord,
  type Fence,
  type RefusalCount,
  type FunctionRecord,
  type JobRecord,
  type Queue,
  type ReadyQueue,
  type RunChange,
  type RunListPosition,
  type RunQuery,
  type RunRecord,
  type RunState,
  type Store,
  type StoreTx,
  type StoredEvent,
  type StoredRunMessage,
  type WriteResult,
} from "@stepwise/engine";
import { ChangeWriter } from "./change-writer.ts";
import { CheckpointWriter } from "./checkpoint-writer.ts";
import { IndexedQueue } from "./indexed-queue.ts";
import { PgQueue } from "./queue.ts";
import { toApp, toEvent, toFunction, toRun } from "./rows.ts";
import { listEventPage, listRunPage } from "./listings.ts";
import { pruneExpired, pruneFlowControl } from "./pruning.ts";
import { appendRunMessages, readRunMessages } from "./run-messages.ts";
import { SCHEMA_SQL } from "./schema.ts";
import { idsParam, type SqlClient } from "./sql.ts";
import { PgReader, PgTx } from "./tx.ts";

const RETRYABLE_CODES = new Set(["40P01", "40001"]);
const MAX_TX_ATTEMPTS = 8;
/** Advisory lock key, arbitrary but fixed, for schema changes (pruning has its own: pruning.ts). */
const MIGRATION_LOCK = 7150;

/** FNV-1a of the schema text: identifies a version of schema.sql. */
function schemaHash(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return `${hash.toString(16)}-${text.length}`;
}

export interface PostgresStoreOptions {
  /**
   * An index of due jobs outside Postgres (Redis). The jobs table stays the record of every
   * job and lease; the index is rebuilt from it when it loses anything.
   */
  readyQueue?: ReadyQueue;
  /** With a ready queue: jobs younger than this are left to their own publish by reconcile (default 5 s). */
  reconcileGraceMs?: number;
  /** Where failures of the store's background calls are said (the executor's log); unset, nowhere. */
  warn?: (line: string) => void;
}

/** The advisory lock app registrations take (an arbitrary constant, "stepwise registration"). */
const REGISTRATION_LOCK = 0x5ec7_0a11;

export class PostgresStore extends PgReader implements Store {
  readonly queue: Queue;
  private readonly checkpoints: CheckpointWriter;
  private readonly changes: ChangeWriter;

  constructor(
    private readonly client: SqlClient,
    options: PostgresStoreOptions = {},
  ) {
    super(client);
    this.checkpoints = new CheckpointWriter(client, retryingConflicts);
    this.changes = new ChangeWriter(client);
    const record = new PgQueue(client);
    this.queue = options.readyQueue ? new IndexedQueue(record, options.readyQueue, options.reconcileGraceMs, options.warn) : record;
  }

  /**
   * Applies the schema unless this exact version is already applied. DDL, even `IF NOT
   * EXISTS`, takes table locks that deadlock with live executors' transactions, so a current
   * schema is detected first and left alone; executors starting together serialize on an
   * advisory lock held for the script's one implicit transaction.
   */
  async migrate(): Promise<void> {
    const hash = schemaHash(SCHEMA_SQL);
    try {
      const rows = await this.client.query("SELECT 1 FROM stepwise_schema WHERE hash = $1", [hash]);
      if (rows.length > 0) return;
    } catch {
      // No schema table yet: a fresh database.
    }
    await this.client.exec(
      `SELECT pg_advisory_xact_lock(${MIGRATION_LOCK});\n${SCHEMA_SQL}\n` +
        `INSERT INTO stepwise_schema (hash) VALUES ('${hash}') ON CONFLICT (hash) DO NOTHING;`,
    );
  }

  async transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return retryingConflicts(() => this.client.transaction((sql) => fn(new PgTx(sql))));
  }

  async loadRunState(runId: string, options: { maxOutputBytes?: number } = {}): Promise<RunState | null> {
    const run = await this.getRun(runId);
    return run ? this.readRest(run, options.maxOutputBytes) : null;
  }

  async applyOptimistically(state: RunState, fence: Fence, change: RunChange): Promise<WriteResult | null> {
    try {
      return await this.changes.write({ runId: state.run.id, version: state.run.version, change, fence });
    } catch (error) {
      // Two executors on one run at once: Postgres aborted this one; the transaction path decides.
      if (retryable(error)) return null;
      throw error;
    }
  }

  async checkpoint(write: CheckpointWrite): Promise<CheckpointResult> {
    // A deadlock with a transaction on the same run: the statement wrote nothing; it is tried again.
    return this.checkpoints.write(write);
  }

  async syncApp(
    app: AppRecord & { deploymentUrl?: string },
    functions: FunctionRecord[],
    ticks: CronTick[] = [],
    options: { revive?: boolean } = {},
  ): Promise<{ taken: Array<{ functionId: string; appId: string }>; queued: JobRecord[]; deleted: string[] }> {
    return this.client.transaction(async (sql) => {
      // One registration at a time: two new apps claiming one ID at once would both see it free.
      await sql.query("SELECT pg_advisory_xact_lock($1)", [REGISTRATION_LOCK]);
      const ids = JSON.stringify(functions.map((fn) => fn.id));
      // Removed functions keep their row (removed_at), so nobody takes over an ID whose runs may still wake.
      const taken = await sql.query<{ id: string; app_id: string }>(
        "SELECT id, app_id FROM functions WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)) AND app_id <> $2",
        [ids, app.id],
      );
      if (taken.length > 0) return { taken: taken.map((row) => ({ functionId: row.id, appId: row.app_id })), queued: [], deleted: [] };
      await sql.query(
        `INSERT INTO apps (id, url, sdk, synced_at, features, version) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, sdk = EXCLUDED.sdk, synced_at = EXCLUDED.synced_at, features = EXCLUDED.features, version = EXCLUDED.version`,
        [app.id, app.url, app.sdk, app.syncedAt, JSON.stringify(app.features), app.version ?? null],
      );
      // The version's deployment URL where the app named one; registering it again brings it
      // back (`revived`: it was gone, or it moved), with no count of refusals. Discovery's
      // registration of an unchanged app every minute (revive: false) neither brings back a
      // deployment found gone nor clears a count: it is no answer of that deployment.
      if (app.version !== undefined) {
        const revived = "(($6::boolean AND app_versions.gone_at IS NOT NULL) OR app_versions.url IS DISTINCT FROM EXCLUDED.url)";
        await sql.query(
          `INSERT INTO app_versions (app_id, version, url, synced_at, features) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (app_id, version) DO UPDATE SET url = EXCLUDED.url, synced_at = EXCLUDED.synced_at, features = EXCLUDED.features,
             gone_at = CASE WHEN ${revived} THEN NULL ELSE app_versions.gone_at END,
             refused_since = CASE WHEN ${revived} THEN NULL ELSE app_versions.refused_since END,
             refused_at = CASE WHEN ${revived} THEN NULL ELSE app_versions.refused_at END`,
          [app.id, app.version, app.deploymentUrl ?? null, app.syncedAt, JSON.stringify(app.features), options.revive ?? true],
        );
      }
      // Functions removed from the app are marked so; their live runs fail with FunctionNotFound.
      await sql.query("UPDATE functions SET removed_at = now() WHERE app_id = $1 AND removed_at IS NULL AND id NOT IN (SELECT jsonb_array_elements_text($2::jsonb))", [
        app.id,
        ids,
      ]);
      for (const fn of functions) {
        await sql.query(
          `INSERT INTO functions (id, app_id, local_id, config, updated_at) VALUES ($1, $2, $3, $4::jsonb, now())
           ON CONFLICT (id) DO UPDATE SET local_id = EXCLUDED.local_id, config = EXCLUDED.config, updated_at = now(), removed_at = NULL
           WHERE functions.app_id = EXCLUDED.app_id`,
          [fn.id, fn.appId, fn.localId, JSON.stringify(fn.config)],
        );
      }
      // Ticks of cron patterns the app's functions no longer have (or of functions it removed) go.
      const keep = JSON.stringify(ticks.map((tick) => [cronJobRunId(tick.functionId), tick.cron]));
      const deleted = await sql.query<{ id: string }>(
        `DELETE FROM jobs WHERE kind = 'cron'
           AND run_id IN (SELECT $1 || id FROM functions WHERE app_id = $2)
           AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements($3::jsonb) k WHERE k->>0 = jobs.run_id AND k->>1 = jobs.step_id)
         RETURNING id`,
        [CRON_JOB_PREFIX, app.id, keep],
      );
      const tx = new PgTx(sql);
      const queued: JobRecord[] = [];
      for (const tick of ticks) {
        const job = await tx.queueCronTick(tick);
        if (job) queued.push(job);
      }
      return { taken: [], queued, deleted: deleted.map((row) => String(row.id)) };
    });
  }

  async listApps(): Promise<AppRecord[]> {
    const rows = await this.client.query(
      `SELECT a.*, (SELECT coalesce(json_agg(json_build_object('version', v.version, 'url', v.url, 'synced_at', v.synced_at, 'features', v.features, 'gone', v.gone_at IS NOT NULL, 'refusing', v.refused_at IS NOT NULL) ORDER BY v.synced_at), '[]')
                    FROM app_versions v WHERE v.app_id = a.id) AS deployments
       FROM apps a ORDER BY a.id`,
    );
    return rows.map(toApp);
  }

  async deploymentRefused(appId: string, version: string, url: string, goneAfterMs: number, pauseMs: number): Promise<RefusalCount> {
    // SET reads the row as it was: a refusal within `pauseMs` of the last one goes on counting.
    const rows = await this.client.query<{ gone: boolean }>(
      `UPDATE app_versions SET
         refused_since = CASE WHEN refused_at IS NULL OR refused_at < now() - make_interval(secs => $5::float8 / 1000) THEN now() ELSE refused_since END,
         refused_at = now(),
         gone_at = CASE WHEN refused_at >= now() - make_interval(secs => $5::float8 / 1000) AND refused_since <= now() - make_interval(secs => $4::float8 / 1000) THEN now() END
       WHERE app_id = $1 AND version = $2 AND url = $3 AND gone_at IS NULL
       RETURNING gone_at IS NOT NULL AS gone`,
      [appId, version, url, goneAfterMs, pauseMs],
    );
    return rows.length === 0 ? "not live" : rows[0]!.gone ? "gone" : "counting";
  }

  async deploymentAnswered(appId: string, version: string, url: string): Promise<void> {
    await this.client.query("UPDATE app_versions SET refused_since = NULL, refused_at = NULL WHERE app_id = $1 AND version = $2 AND url = $3 AND refused_at IS NOT NULL", [
      appId,
      version,
      url,
    ]);
  }

  async markDeploymentGone(appId: string, version: string, url: string): Promise<boolean> {
    // At that URL only: the version registered again elsewhere since is another deployment.
    const rows = await this.client.query("UPDATE app_versions SET gone_at = now() WHERE app_id = $1 AND version = $2 AND url = $3 AND gone_at IS NULL RETURNING version", [
      appId,
      version,
      url,
    ]);
    return rows.length > 0;
  }

  async listFunctions(): Promise<FunctionRecord[]> {
    return (await this.client.query("SELECT * FROM functions WHERE removed_at IS NULL ORDER BY id")).map(toFunction);
  }

  async setFunctionPaused(functionId: string, change: { paused: Date } | { resumed: "run" | "skip" }): Promise<FunctionRecord | null> {
    const [row] = await this.client.query(
      "paused" in change
        ? "UPDATE functions SET paused_at = $2 WHERE id = $1 AND removed_at IS NULL RETURNING *"
        : "UPDATE functions SET paused_at = NULL, held_runs = $2 WHERE id = $1 AND removed_at IS NULL RETURNING *",
      [functionId, "paused" in change ? change.paused.toISOString() : change.resumed],
    );
    return row ? toFunction(row) : null;
  }

  async findUnreleasedHolds(limit: number): Promise<Array<{ functionId: string; held: "run" | "skip" }>> {
    const rows = await this.client.query<{ id: string; held_runs: string | null }>(
      `SELECT f.id, f.held_runs FROM functions f
       WHERE f.paused_at IS NULL AND EXISTS (
         SELECT 1 FROM runs r WHERE r.function_id = f.id AND r.paused_by = 'function' AND r.status NOT IN ('completed', 'failed', 'cancelled', 'skipped'))
       LIMIT $1`,
      [limit],
    );
    return rows.map((row) => ({ functionId: row.id, held: row.held_runs === "skip" ? "skip" : "run" }));
  }

  async listHeldRuns(functionId: string, limit: number): Promise<string[]> {
    const rows = await this.client.query<{ id: string }>(
      `SELECT id FROM runs WHERE function_id = $1 AND paused_by = 'function' AND status NOT IN ('completed', 'failed', 'cancelled', 'skipped')
       ORDER BY started_at, id LIMIT $2`,
      [functionId, limit],
    );
    return rows.map((row) => row.id);
  }

  async listRunsByEvent(eventId: string): Promise<RunRecord[]> {
    return (
      await this.client.query(
        `SELECT * FROM runs WHERE event_id = $1 OR id IN (SELECT run_id FROM run_events WHERE event_id = $1 AND position > 0)
         ORDER BY started_at, id`,
        [eventId],
      )
    ).map(toRun);
  }

  async getEvents(eventIds: readonly string[]): Promise<EventRecord[]> {
    if (eventIds.length === 0) return [];
    const rows = await this.client.query(`SELECT * FROM events WHERE id = ANY (${idsParam("$1", "text")})`, [JSON.stringify(eventIds)]);
    return rows.map(toEvent);
  }

  listRuns(query: RunQuery): Promise<{ runs: RunRecord[]; positions: RunListPosition[]; next: RunListPosition | null }> {
    return listRunPage(this.client, query);
  }

  listEvents(query: EventQuery): Promise<{ events: StoredEvent[]; next: string | null }> {
    return listEventPage(this.client, query);
  }

  async listRunsByEvents(eventIds: readonly string[]): Promise<Array<{ eventId: string; run: RunRecord }>> {
    if (eventIds.length === 0) return [];
    const rows = await this.client.query(
      `WITH wanted AS (SELECT value AS id FROM jsonb_array_elements_text($1::jsonb))
       SELECT r.*, r.event_id AS of_event FROM runs r WHERE r.event_id IN (SELECT id FROM wanted)
       UNION ALL
       SELECT r.*, b.event_id AS of_event FROM run_events b JOIN runs r ON r.id = b.run_id
       WHERE b.event_id IN (SELECT id FROM wanted) AND b.position > 0
       ORDER BY started_at, id`,
      [JSON.stringify(eventIds)],
    );
    return rows.map((row) => ({ eventId: String(row.of_event), run: toRun(row) }));
  }

  async endedRuns(runIds: readonly string[]): Promise<string[]> {
    if (runIds.length === 0) return [];
    const rows = await this.client.query<{ id: string }>(
      `SELECT w.id FROM jsonb_array_elements_text($1::jsonb) AS w(id) LEFT JOIN runs r ON r.id = w.id
       WHERE r.id IS NULL OR r.status = ANY(${idsParam("$2", "text")})`,
      [JSON.stringify(runIds), JSON.stringify(TERMINAL_RUN_STATUSES)],
      { prepare: "stepwise_ended_runs" },
    );
    return rows.map((row) => row.id);
  }

  async listBatchEventIds(runId: string): Promise<string[]> {
    const rows = await this.client.query<{ event_id: string }>("SELECT event_id FROM run_events WHERE run_id = $1 ORDER BY position", [runId]);
    return rows.map((row) => row.event_id);
  }

  appendRunMessages(runId: string, messages: ReadonlyArray<{ topic: string; data: string }>): Promise<number> {
    return appendRunMessages(this.client, runId, messages);
  }

  readRunMessages(runId: string, afterSeq: number, limit: number): Promise<StoredRunMessage[]> {
    return readRunMessages(this.client, runId, afterSeq, limit);
  }

  async queueStats(): Promise<{ due: number; oldestDueAt: Date | null; leased: number }> {
    const [row] = await this.client.query<{ due: number | string; oldest: string | Date | null; leased: number | string }>(
      `SELECT count(*) FILTER (WHERE run_at <= now() AND (locked_until IS NULL OR locked_until < now())) AS due,
              min(run_at) FILTER (WHERE run_at <= now() AND (locked_until IS NULL OR locked_until < now())) AS oldest,
              count(*) FILTER (WHERE locked_until >= now()) AS leased
       FROM jobs`,
    );
    return { due: Number(row?.due ?? 0), oldestDueAt: row?.oldest ? new Date(row.oldest) : null, leased: Number(row?.leased ?? 0) };
  }

  async findStrandedRuns(minAgeMs: number, limit: number): Promise<string[]> {
    const rows = await this.client.query<{ id: string }>(
      `SELECT r.id FROM runs r
       WHERE r.status NOT IN ('completed', 'failed', 'cancelled', 'skipped')
         -- A paused run has no job on purpose.
         AND r.paused_at IS NULL
         AND r.started_at < now() - make_interval(secs => $1::float8 / 1000)
         -- A timeout that would only cancel it is not what moves a run on.
         AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = r.id AND j.kind <> 'finish-timeout')
         -- A run waiting for a child it invoked has no job until the child ends: not stranded.
         AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.id AND s.status = 'invoking')
       ORDER BY r.started_at LIMIT $2`,
      [minAgeMs, limit],
    );
    return rows.map((row) => row.id);
  }

  prune(olderThanMs: number, limit: number): Promise<{ runs: number; events: number }> {
    return pruneExpired(this.client, olderThanMs, limit);
  }

  pruneFlowControl(limit: number): Promise<number> {
    return pruneFlowControl(this.client, limit);
  }

  /**
   * Ends the store's connections. What the queue still has to tell Redis in the background goes
   * first, for `settleMs` at most (a second unless told: a Worker closes its store when its
   * request is done; a server gives what is left of its grace period): a deletion Redis never
   * hears of costs a claim that finds the job gone when it comes due.
   */
  async close({ settleMs = CLOSE_SETTLE_MS }: { settleMs?: number } = {}): Promise<void> {
    const settled = this.queue.settled?.();
    if (settled) await within(settled, Date.now() + settleMs);
    await this.client.close();
  }
}

/** How long `close()` waits for the queue's background calls, unless told otherwise. */
const CLOSE_SETTLE_MS = 1_000;

/** Runs `attempt` again (with a short random pause) when Postgres aborted it for a deadlock or a serialization failure. */
async function retryingConflicts<T>(attempt: () => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (error) {
      if (!retryable(error) || n >= MAX_TX_ATTEMPTS) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * n));
    }
  }
}

function retryable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && RETRYABLE_CODES.has(code);
}
