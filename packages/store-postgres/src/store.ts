/**
 * The system of record on Postgres (PGlite embedded, or any Postgres through a driver).
 * Every state change runs in one transaction, retried when Postgres aborts it for a
 * deadlock or a serialization failure (two executors touching the same runs).
 */
import type { AppRecord, FunctionRecord, JobRecord, Queue, RunRecord, RunSnapshot, Store, StoreTx } from "@stepwise/engine";
import { applyOptimistically } from "./optimistic.ts";
import { PgQueue } from "./queue.ts";
import { toApp, toEvent, toFunction, toJob, toRun, toStep } from "./rows.ts";
import { SCHEMA_SQL } from "./schema.ts";
import type { SqlClient } from "./sql.ts";
import { PgReader, PgTx } from "./tx.ts";

const RETRYABLE_CODES = new Set(["40P01", "40001"]);
const MAX_TX_ATTEMPTS = 8;
/** Advisory lock keys, arbitrary but fixed: one for schema changes, one for the stranded-run sweep. */
const MIGRATION_LOCK = 7150;
const SWEEP_LOCK = 7151;

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
   * A queue that lives outside Postgres (Redis). The jobs table then stays the durable record
   * of every job, and the queue is rebuilt from it when it loses anything.
   */
  queue?: Queue;
}

export class PostgresStore extends PgReader implements Store {
  readonly queue: Queue;
  private readonly leasesInPostgres: boolean;
  /** The jobs table as a queue: the record's own leases (continuations) are extended through it. */
  private readonly record: PgQueue;

  constructor(
    private readonly client: SqlClient,
    options: PostgresStoreOptions = {},
  ) {
    super(client);
    this.record = new PgQueue(client);
    this.queue = options.queue ?? this.record;
    this.leasesInPostgres = !options.queue;
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
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.client.transaction((sql) => fn(new PgTx(sql, this.leasesInPostgres)));
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        if (typeof code !== "string" || !RETRYABLE_CODES.has(code) || attempt >= MAX_TX_ATTEMPTS) throw error;
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * attempt));
      }
    }
  }

  async loadRunSnapshot(runId: string): Promise<RunSnapshot | null> {
    const [row] = await this.client.query<{ run: Record<string, unknown>; steps: Array<Record<string, unknown>>; event: Record<string, unknown> | null }>(
      `SELECT row_to_json(r) AS run,
              (SELECT coalesce(json_agg(s ORDER BY s.position, s.id), '[]'::json) FROM steps s WHERE s.run_id = r.id) AS steps,
              (SELECT row_to_json(e) FROM events e WHERE e.id = r.event_id) AS event
       FROM runs r WHERE r.id = $1`,
      [runId],
    );
    if (!row) return null;
    if (!row.event) throw new Error(`run ${runId}: its event is missing from the store`);
    return { run: toRun(row.run), steps: row.steps.map(toStep), event: toEvent(row.event) };
  }

  applyOptimistically<T>(snapshot: RunSnapshot, fn: (tx: StoreTx) => Promise<T>): Promise<{ result: T } | null> {
    return applyOptimistically(this.client, this.leasesInPostgres, snapshot, fn);
  }

  async syncApp(app: AppRecord, functions: FunctionRecord[]): Promise<void> {
    await this.client.transaction(async (sql) => {
      await sql.query(
        `INSERT INTO apps (id, url, sdk, synced_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, sdk = EXCLUDED.sdk, synced_at = EXCLUDED.synced_at`,
        [app.id, app.url, app.sdk, app.syncedAt],
      );
      // Functions removed from the app are dropped; their live runs fail with FunctionNotFound.
      await sql.query("DELETE FROM functions WHERE app_id = $1 AND id NOT IN (SELECT jsonb_array_elements_text($2::jsonb))",
        [app.id, JSON.stringify(functions.map((fn) => fn.id))],
      );
      for (const fn of functions) {
        await sql.query(
          `INSERT INTO functions (id, app_id, local_id, config, updated_at) VALUES ($1, $2, $3, $4::jsonb, now())
           ON CONFLICT (id) DO UPDATE SET app_id = EXCLUDED.app_id, local_id = EXCLUDED.local_id,
             config = EXCLUDED.config, updated_at = now()`,
          [fn.id, fn.appId, fn.localId, JSON.stringify(fn.config)],
        );
      }
    });
  }

  async listApps(): Promise<AppRecord[]> {
    return (await this.client.query("SELECT * FROM apps ORDER BY id")).map(toApp);
  }

  async listFunctions(): Promise<FunctionRecord[]> {
    return (await this.client.query("SELECT * FROM functions ORDER BY id")).map(toFunction);
  }

  async listRunsByEvent(eventId: string): Promise<RunRecord[]> {
    return (await this.client.query("SELECT * FROM runs WHERE event_id = $1 ORDER BY started_at, id", [eventId])).map(toRun);
  }

  async extendRecordLeases(jobIds: string[], owner: string, leaseMs: number): Promise<void> {
    await this.record.extendLeases(jobIds, owner, leaseMs);
  }

  async jobExists(jobId: string): Promise<boolean> {
    return (await this.client.query("SELECT 1 FROM jobs WHERE id = $1", [jobId])).length > 0;
  }

  async listJobs(afterId: string | null, limit: number, createdBefore: Date): Promise<JobRecord[]> {
    const rows = await this.client.query(
      // A job leased in the record is a continuation its worker holds: not lost, just busy.
      `SELECT * FROM jobs WHERE id > $1 AND created_at < $2 AND (locked_until IS NULL OR locked_until < now())
       ORDER BY id LIMIT $3`,
      [afterId ?? "0", createdBefore.toISOString(), limit],
    );
    return rows.map(toJob);
  }

  async sweepStrandedRuns(): Promise<string[]> {
    return this.client.transaction(async (sql) => {
      // One sweeper at a time across executors; the others skip this round.
      const [lock] = await sql.query<{ ok: boolean }>(`SELECT pg_try_advisory_xact_lock(${SWEEP_LOCK}) AS ok`);
      if (!lock?.ok) return [];
      const rows = await sql.query<{ run_id: string }>(
        `INSERT INTO jobs (kind, run_id)
         SELECT 'invoke', r.id FROM runs r
         WHERE r.status NOT IN ('completed', 'failed', 'cancelled')
           AND r.started_at < now() - interval '30 seconds'
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = r.id)
           AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = r.id AND s.status = 'invoking')
         RETURNING run_id`,
      );
      return rows.map((row) => row.run_id);
    });
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
