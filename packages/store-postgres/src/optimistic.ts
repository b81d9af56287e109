/**
 * Optimistic writes: the executor's logic runs against a snapshot of one run (the state its
 * worker committed a moment ago), every write is recorded instead of sent, and all of them are
 * applied by ONE statement that succeeds only if the run's version is still the snapshot's and
 * the job is still there. One round trip per step instead of a transaction's seven or so.
 *
 * Anything the snapshot cannot answer (another run, events, matchers) throws
 * {@link NeedsTransaction}; a stale snapshot makes the statement change nothing. Either way
 * the caller runs the same logic again in a real transaction, so correctness never depends on
 * this path: it only skips round trips when nothing moved.
 */
import type { EventRecord, JobRecord, MatcherRecord, NewJob, RunRecord, RunSnapshot, StepRecord, StoreTx } from "@stepwise/engine";
import type { SqlExecutor } from "./sql.ts";
import { toJob } from "./rows.ts";

/** The snapshot does not cover what the logic asked for: use a transaction. */
export class NeedsTransaction extends Error {
  override name = "NeedsTransaction";
}

type RunPatch = Partial<Pick<RunRecord, "status" | "attempt" | "output" | "error" | "endedAt">>;

class RecordingTx implements StoreTx {
  readonly steps = new Map<string, StepRecord>();
  readonly jobs: Array<{ job: NewJob; record: JobRecord; lease?: { owner: string; leaseMs: number } }> = [];
  runPatch: RunPatch = {};
  dropMatchers = false;
  fence: { jobId: string; owner: string } | undefined;

  constructor(private readonly snapshot: RunSnapshot) {}

  private ours(runId: string): void {
    if (runId !== this.snapshot.run.id) throw new NeedsTransaction(`run ${runId} is not in the snapshot`);
  }

  async getRun(runId: string): Promise<RunRecord | null> {
    this.ours(runId);
    return { ...this.snapshot.run, ...this.runPatch };
  }

  async listSteps(runId: string): Promise<StepRecord[]> {
    this.ours(runId);
    return this.snapshot.steps.map((step) => this.steps.get(step.id) ?? step);
  }

  async getEvent(eventId: string): Promise<EventRecord | null> {
    if (eventId !== this.snapshot.event.id) throw new NeedsTransaction(`event ${eventId} is not in the snapshot`);
    return this.snapshot.event;
  }

  async lockRun(runId: string): Promise<RunRecord | null> {
    this.ours(runId);
    // The statement bumps the version: the run as it will be once that commits.
    return { ...this.snapshot.run, ...this.runPatch, version: this.snapshot.run.version + 1 };
  }

  async updateRun(runId: string, patch: RunPatch): Promise<void> {
    this.ours(runId);
    Object.assign(this.runPatch, patch);
  }

  async saveStep(step: StepRecord): Promise<void> {
    this.ours(step.runId);
    this.steps.set(step.id, step);
  }

  async deleteMatchers(runId: string): Promise<void> {
    this.ours(runId);
    this.dropMatchers = true;
  }

  async enqueue(jobs: NewJob[], lease?: { owner: string; leaseMs: number }): Promise<JobRecord[]> {
    return jobs.map((job) => {
      this.ours(job.runId);
      // The ID comes from the database: patched in place once the statement returns.
      const record: JobRecord = { ...job, id: "", runAt: job.runAt ?? new Date(), claims: lease ? 1 : 0 };
      this.jobs.push({ job, record, lease });
      return record;
    });
  }

  async completeJob(jobId: string, owner: string): Promise<boolean> {
    if (this.fence) throw new NeedsTransaction("more than one job completed");
    this.fence = { jobId, owner };
    return true;
  }

  async insertEvents(): Promise<EventRecord[]> {
    throw new NeedsTransaction("events");
  }
  async insertRun(): Promise<boolean> {
    throw new NeedsTransaction("new runs");
  }
  async insertMatchers(_: MatcherRecord[]): Promise<void> {
    throw new NeedsTransaction("matchers");
  }
  async findMatchers(): Promise<MatcherRecord[]> {
    throw new NeedsTransaction("matchers");
  }
  async deleteMatcher(): Promise<void> {
    throw new NeedsTransaction("matchers");
  }
}

/**
 * Runs `fn` on a recording of `snapshot` and applies what it wrote in one statement. Returns
 * null when that was not possible (see the module comment); `fn` is then to be run again.
 */
export async function applyOptimistically<T>(
  sql: SqlExecutor,
  leasesInRecord: boolean,
  snapshot: RunSnapshot,
  fn: (tx: StoreTx) => Promise<T>,
): Promise<{ result: T } | null> {
  const tx = new RecordingTx(snapshot);
  let result: T;
  try {
    result = await fn(tx);
  } catch (error) {
    if (error instanceof NeedsTransaction) return null;
    throw error;
  }
  if (!tx.fence) return null;
  let rows: Array<{ ok: boolean; jobs: Array<Record<string, unknown>> | null }>;
  try {
    rows = await sql.query(STATEMENT, [
      snapshot.run.id,
      snapshot.run.version,
      tx.fence.jobId,
      leasesInRecord ? tx.fence.owner : null,
      runPatchJson(tx.runPatch),
      JSON.stringify([...tx.steps.values()].map(stepRow)),
      JSON.stringify(tx.jobs.map(({ job, lease }) => jobRow(job, lease))),
      tx.dropMatchers,
    ]);
  } catch (error) {
    // Two executors on one job (a lease ran out): Postgres aborts one; the transaction decides.
    if (RETRY_CODES.has(String((error as { code?: unknown }).code))) return null;
    throw error;
  }
  const [row] = rows;
  if (!row?.ok) return null;
  const inserted = (row.jobs ?? []).map(toJob).sort((a, b) => Number(a.id) - Number(b.id));
  tx.jobs.forEach(({ record }, index) => Object.assign(record, inserted[index]));
  return { result };
}

const RETRY_CODES = new Set(["40P01", "40001"]);

function runPatchJson(patch: RunPatch): string {
  return JSON.stringify({
    status: patch.status ?? null,
    attempt: patch.attempt ?? null,
    output: patch.output === undefined ? null : patch.output,
    has_output: patch.output !== undefined,
    error: patch.error ?? null,
    ended_at: patch.endedAt?.toISOString() ?? null,
  });
}

function stepRow(step: StepRecord) {
  return {
    id: step.id,
    name: step.name,
    kind: step.kind,
    position: step.position,
    status: step.status,
    output: step.output === undefined ? null : step.output,
    has_output: step.output !== undefined,
    error: step.error ?? null,
    attempts: step.attempts,
    wake_at: step.wakeAt?.toISOString() ?? null,
    started_at: step.startedAt.toISOString(),
    ended_at: step.endedAt?.toISOString() ?? null,
  };
}

function jobRow(job: NewJob, lease?: { owner: string; leaseMs: number }) {
  return {
    kind: job.kind,
    step_id: job.stepId ?? null,
    run_at: job.runAt?.toISOString() ?? null,
    locked_by: lease?.owner ?? null,
    lease_ms: lease?.leaseMs ?? null,
  };
}

/**
 * $1 run id, $2 expected version, $3 job id, $4 job owner (null: any), $5 run patch,
 * $6 steps, $7 jobs, $8 drop matchers. `lock` takes the run's row lock if its version is the
 * snapshot's; `done` deletes the job (the fence: whoever deletes it applies the result) only
 * then; every write waits on `done`, so when either check fails nothing at all is written.
 */
const STATEMENT = `
WITH lock AS (SELECT id FROM runs WHERE id = $1 AND version = $2 FOR UPDATE),
done AS (
  DELETE FROM jobs WHERE id = $3::bigint AND ($4::text IS NULL OR locked_by = $4::text) AND EXISTS (SELECT 1 FROM lock)
  RETURNING id
),
patch AS (SELECT * FROM jsonb_to_record($5::jsonb) AS p(status text, attempt int, output jsonb, has_output boolean, error jsonb, ended_at timestamptz)),
bumped AS (
  UPDATE runs SET version = version + 1,
    status = coalesce((SELECT status FROM patch), runs.status),
    attempt = coalesce((SELECT attempt FROM patch), runs.attempt),
    output = CASE WHEN (SELECT has_output FROM patch) THEN (SELECT output FROM patch) ELSE runs.output END,
    error = coalesce((SELECT error FROM patch), runs.error),
    ended_at = coalesce((SELECT ended_at FROM patch), runs.ended_at)
  WHERE id = $1 AND EXISTS (SELECT 1 FROM done)
  RETURNING id
),
saved AS (
  INSERT INTO steps (run_id, id, name, kind, position, status, output, error, attempts, wake_at, started_at, ended_at)
  SELECT $1, s.id, s.name, s.kind, s.position, s.status, CASE WHEN s.has_output THEN s.output END, s.error,
         s.attempts, s.wake_at, s.started_at, s.ended_at
  FROM jsonb_to_recordset($6::jsonb) AS s(id text, name text, kind text, position int, status text, output jsonb,
       has_output boolean, error jsonb, attempts int, wake_at timestamptz, started_at timestamptz, ended_at timestamptz)
  WHERE EXISTS (SELECT 1 FROM done)
  ON CONFLICT (run_id, id) DO UPDATE SET
    status = EXCLUDED.status, output = EXCLUDED.output, error = EXCLUDED.error,
    attempts = EXCLUDED.attempts, wake_at = EXCLUDED.wake_at, ended_at = EXCLUDED.ended_at
  RETURNING 1
),
unmatched AS (DELETE FROM matchers WHERE run_id = $1 AND $8::boolean AND EXISTS (SELECT 1 FROM done) RETURNING 1),
queued AS (
  INSERT INTO jobs (kind, run_id, step_id, run_at, locked_by, locked_until, claims)
  SELECT j.kind, $1, j.step_id, coalesce(j.run_at, now()), j.locked_by,
         CASE WHEN j.locked_by IS NULL THEN NULL ELSE now() + make_interval(secs => j.lease_ms / 1000.0) END,
         CASE WHEN j.locked_by IS NULL THEN 0 ELSE 1 END
  FROM jsonb_to_recordset($7::jsonb) AS j(kind text, step_id text, run_at timestamptz, locked_by text, lease_ms float8)
  WHERE EXISTS (SELECT 1 FROM done)
  RETURNING *
)
SELECT EXISTS (SELECT 1 FROM bumped) AS ok,
       (SELECT json_agg(q) FROM queued q) AS jobs,
       (SELECT count(*) FROM saved) + (SELECT count(*) FROM unmatched) AS writes`;
