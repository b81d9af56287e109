/**
 * The executor's unit of work in SQL: one statement per operation, all run on the executor
 * given (a transaction's, or the client's for plain reads).
 */
import type { EventRecord, JobRecord, MatcherRecord, NewJob, RunRecord, StepRecord, StoreTx } from "@stepwise/engine";
import type { SqlExecutor } from "./sql.ts";
import { json, toEvent, toJob, toMatcher, toRun, toStep } from "./rows.ts";

/** Reads shared by transactions and the store. */
export class PgReader {
  constructor(protected readonly sql: SqlExecutor) {}

  async getRun(runId: string): Promise<RunRecord | null> {
    const rows = await this.sql.query("SELECT * FROM runs WHERE id = $1", [runId]);
    return rows[0] ? toRun(rows[0]) : null;
  }

  async listSteps(runId: string): Promise<StepRecord[]> {
    const rows = await this.sql.query("SELECT * FROM steps WHERE run_id = $1 ORDER BY position, id", [runId]);
    return rows.map(toStep);
  }

  async getEvent(eventId: string): Promise<EventRecord | null> {
    const rows = await this.sql.query("SELECT * FROM events WHERE id = $1", [eventId]);
    return rows[0] ? toEvent(rows[0]) : null;
  }
}

export class PgTx extends PgReader implements StoreTx {
  /**
   * @param leases whether claims come from the jobs table (the Postgres queue), so a
   *   completion must come from the lease holder. With a queue elsewhere (Redis) the delete
   *   that completes a job is the fence: whoever deletes it first applied its result. Either
   *   way a continuation (a job handed straight to the worker that queued it) is leased here,
   *   in the record, so nobody else takes it while that worker is alive.
   */
  constructor(
    sql: SqlExecutor,
    private readonly leases = true,
  ) {
    super(sql);
  }

  async insertEvents(events: EventRecord[]): Promise<EventRecord[]> {
    if (events.length === 0) return [];
    // Arrays travel as one JSON document: the drivers disagree on how to send JS arrays.
    const rows = await this.sql.query<{ id: string }>(
      `INSERT INTO events (id, name, data, ts)
       SELECT id, name, coalesce(data, '{}'::jsonb), ts FROM jsonb_to_recordset($1::jsonb) AS e(id text, name text, data jsonb, ts bigint)
       ON CONFLICT (id) DO NOTHING RETURNING id`,
      [JSON.stringify(events.map((e) => ({ id: e.id, name: e.name, data: e.data ?? {}, ts: e.ts })))],
    );
    const inserted = new Set(rows.map((row) => row.id));
    return events.filter((event) => inserted.has(event.id));
  }

  async insertRun(run: RunRecord): Promise<boolean> {
    const rows = await this.sql.query(
      `INSERT INTO runs (id, function_id, event_id, status, attempt, parent_run_id, parent_step_id, started_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING id`,
      [run.id, run.functionId, run.eventId, run.status, run.attempt, run.parentRunId ?? null, run.parentStepId ?? null, run.startedAt],
    );
    return rows.length > 0;
  }

  /** Locks the run by bumping its version: writers holding an older snapshot then know. */
  async lockRun(runId: string): Promise<RunRecord | null> {
    const rows = await this.sql.query("UPDATE runs SET version = version + 1 WHERE id = $1 RETURNING *", [runId]);
    return rows[0] ? toRun(rows[0]) : null;
  }

  async updateRun(
    runId: string,
    patch: Partial<Pick<RunRecord, "status" | "attempt" | "output" | "error" | "endedAt">>,
  ): Promise<void> {
    const sets: string[] = [];
    const params: unknown[] = [runId];
    const set = (column: string, value: unknown, cast = "") => {
      params.push(value);
      sets.push(`${column} = $${params.length}${cast}`);
    };
    if (patch.status !== undefined) set("status", patch.status);
    if (patch.attempt !== undefined) set("attempt", patch.attempt);
    if ("output" in patch && patch.output !== undefined) set("output", json(patch.output), "::jsonb");
    if (patch.error !== undefined) set("error", json(patch.error), "::jsonb");
    if (patch.endedAt !== undefined) set("ended_at", patch.endedAt);
    if (sets.length === 0) return;
    await this.sql.query(`UPDATE runs SET ${sets.join(", ")} WHERE id = $1`, params);
  }

  async saveStep(step: StepRecord): Promise<void> {
    await this.sql.query(
      `INSERT INTO steps (run_id, id, name, kind, position, status, output, error, attempts, wake_at, started_at, ended_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11, $12)
       ON CONFLICT (run_id, id) DO UPDATE SET
         status = EXCLUDED.status, output = EXCLUDED.output, error = EXCLUDED.error,
         attempts = EXCLUDED.attempts, wake_at = EXCLUDED.wake_at, ended_at = EXCLUDED.ended_at`,
      [
        step.runId,
        step.id,
        step.name,
        step.kind,
        step.position,
        step.status,
        json(step.output),
        json(step.error),
        step.attempts,
        step.wakeAt ?? null,
        step.startedAt,
        step.endedAt ?? null,
      ],
    );
  }

  async insertMatchers(matchers: MatcherRecord[]): Promise<void> {
    for (const m of matchers) {
      await this.sql.query(
        `INSERT INTO matchers (run_id, step_id, kind, event_name, match_path, match_value, if_expr, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8) ON CONFLICT (run_id, step_id) DO NOTHING`,
        [m.runId, m.stepId, m.kind, m.eventName, m.matchPath ?? null, json(m.matchValue), m.ifExpr ?? null, m.expiresAt ?? null],
      );
    }
  }

  async findMatchers(eventName: string): Promise<MatcherRecord[]> {
    const rows = await this.sql.query("SELECT * FROM matchers WHERE event_name = $1 ORDER BY run_id, step_id", [eventName]);
    return rows.map(toMatcher);
  }

  async deleteMatcher(runId: string, stepId: string): Promise<void> {
    await this.sql.query("DELETE FROM matchers WHERE run_id = $1 AND step_id = $2", [runId, stepId]);
  }

  async deleteMatchers(runId: string): Promise<void> {
    await this.sql.query("DELETE FROM matchers WHERE run_id = $1", [runId]);
  }

  async enqueue(jobs: NewJob[], requestedLease?: { owner: string; leaseMs: number }): Promise<JobRecord[]> {
    if (jobs.length === 0) return [];
    const lease = requestedLease;
    const rows = await this.sql.query(
      `INSERT INTO jobs (kind, run_id, step_id, run_at, locked_by, locked_until, claims)
       SELECT kind, run_id, step_id, coalesce(run_at, now()), $2::text,
              CASE WHEN $2::text IS NULL THEN NULL ELSE now() + make_interval(secs => $3::float8 / 1000) END,
              CASE WHEN $2::text IS NULL THEN 0 ELSE 1 END
       FROM jsonb_to_recordset($1::jsonb) AS j(kind text, run_id text, step_id text, run_at timestamptz)
       RETURNING *`,
      [
        JSON.stringify(jobs.map((j) => ({ kind: j.kind, run_id: j.runId, step_id: j.stepId ?? null, run_at: j.runAt?.toISOString() ?? null }))),
        lease?.owner ?? null,
        lease?.leaseMs ?? 0,
      ],
    );
    return rows.map(toJob);
  }

  async completeJob(jobId: string, owner: string): Promise<boolean> {
    const rows = this.leases
      ? await this.sql.query("DELETE FROM jobs WHERE id = $1 AND locked_by = $2 RETURNING id", [jobId, owner])
      : await this.sql.query("DELETE FROM jobs WHERE id = $1 RETURNING id", [jobId]);
    return rows.length > 0;
  }
}
