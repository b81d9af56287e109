/**
 * The one write encoder: a {@link RunChange} as one JSON document and one SQL statement. The
 * optimistic path runs it alone, guarded by the run's version and the job's lease (it deletes
 * the job: the fence); a transaction runs it on a run it has locked. Either way every write of a
 * change goes through here, encoded once: a value is JSON text (`json`), SQL NULL means
 * undefined. Changes of many runs gathered into one statement (`change-writer.ts`) go to
 * `stepwise_apply_changes` in schema.sql, the same document applied by a second text of this
 * statement: each must write what the other writes (`test/gathered-changes.test.ts` compares).
 */
import { changeOnlyAdds, type Fence, type JobRecord, type MatcherRecord, type NewJob, type NewRunWrite, type RunChange, type StepRecord, type WriteResult } from "@stepwise/engine";
import { HELD, type SqlExecutor } from "./sql.ts";
import { json, toJob } from "./rows.ts";

/**
 * Writes `change` to run `runId` if its version is still `version` and, with a fence, the
 * fence's owner still holds its job (which is deleted). Null when a guard failed: nothing was
 * written then. Deadlock and serialization failures are thrown for the caller to decide.
 */
export async function writeChange(
  sql: SqlExecutor,
  runId: string,
  version: number,
  change: RunChange,
  fence?: Fence,
): Promise<WriteResult | null> {
  const [row] = await sql.query<{ version: number | null; jobs: Array<Record<string, unknown>>; deleted: Array<string | number> }>(APPLY_CHANGE, [
    runId,
    version,
    fence?.jobId ?? null,
    fence?.owner ?? null,
    JSON.stringify(encodeChange(change)),
    fence?.unclaimed ?? false,
  ], { prepare: "stepwise_apply_change" });
  return written(row?.version, row?.jobs ?? [], row?.deleted ?? []);
}

/** A change to one run, guarded as {@link writeChange} guards it (always fenced: it deletes its job). */
export interface ChangeWrite {
  runId: string;
  version: number;
  change: RunChange;
  fence: Fence;
}

/**
 * Writes changes to distinct runs in one statement (`stepwise_apply_changes` in schema.sql),
 * each under its own guards, skipping rows another transaction holds: per change, in the order
 * given, its result, null when a guard failed, or {@link HELD} (nothing written: write it
 * again alone with {@link writeChange}, which waits its turn).
 */
export async function writeChanges(sql: SqlExecutor, writes: ChangeWrite[]): Promise<Array<WriteResult | null | typeof HELD>> {
  const input = writes.map((write, idx) => ({
    idx,
    run_id: write.runId,
    version: write.version,
    job_id: write.fence.jobId,
    owner: write.fence.owner,
    unclaimed: write.fence.unclaimed ?? false,
    doc: encodeChange(write.change),
  }));
  const rows = await sql.query<{ idx: number; held: boolean; version: number | null; queued_jobs: Array<Record<string, unknown>>; deleted_jobs: Array<string | number> }>(
    APPLY_CHANGES,
    [JSON.stringify(input), JSON.stringify(writes.map((write) => write.runId)), JSON.stringify(writes.map((write) => write.fence.jobId))],
    { prepare: "stepwise_apply_changes_fn" },
  );
  const byIndex = new Map(rows.map((row) => [Number(row.idx), row]));
  return writes.map((_, idx) => {
    const row = byIndex.get(idx);
    if (row?.held) return HELD;
    return written(row?.version, row?.queued_jobs ?? [], row?.deleted_jobs ?? []);
  });
}

const APPLY_CHANGES = "SELECT idx, held, version, queued_jobs, deleted_jobs FROM stepwise_apply_changes($1::jsonb, $2::jsonb, $3::jsonb)";

/** A write's result from the statement's answer: null when it wrote nothing (no new version). */
function written(version: number | null | undefined, rows: Array<Record<string, unknown>>, deleted: Array<string | number>): WriteResult | null {
  if (version === null || version === undefined) return null;
  const jobs: JobRecord[] = rows.map(toJob);
  const leased = new Set(rows.filter((job) => job.locked_by != null).map((job) => String(job.id)));
  return {
    version: Number(version),
    queued: jobs.filter((job) => !leased.has(job.id)),
    continued: jobs.find((job) => leased.has(job.id)),
    deleted: deleted.map(String),
  };
}

/**
 * Inserts runs started in one transaction, each with the jobs and matchers its change adds (its
 * first invocation, its `cancelOn` waits), in one statement however many there are: a burst of
 * events starts its runs in one write. Returns each inserted run's result, by run ID; a run
 * whose ID existed is left out, and nothing of its change is written.
 */
export async function writeNewRuns(sql: SqlExecutor, started: NewRunWrite[]): Promise<Map<string, WriteResult>> {
  const results = new Map<string, WriteResult>();
  if (started.length === 0) return results;
  const [row] = await sql.query<{ runs: string[]; held: string[]; jobs: Array<Record<string, unknown>> }>(INSERT_RUNS, [
    JSON.stringify(
      started.map(({ run, change }) => {
        if (change && !changeOnlyAdds(change)) throw new Error(`run ${run.id}: a new run's change may only add jobs and matchers; write the rest with writeChange`);
        return {
        id: run.id,
        function_id: run.functionId,
        event_id: run.eventId,
        status: run.status,
        attempt: run.attempt,
        parent_run_id: run.parentRunId ?? null,
        parent_step_id: run.parentStepId ?? null,
        started_at: run.startedAt.toISOString(),
        version: run.version,
        state_bytes: run.stateBytes,
        concurrency: run.concurrency ?? null,
        replay_of: run.replayOf ?? null,
        rerun_from: run.rerunFrom ?? null,
        paused_at: run.paused?.at.toISOString() ?? null,
        paused_by: run.paused?.by ?? null,
        traceparent: run.traceparent ?? null,
        app_version: run.appVersion ?? null,
        jobs: change?.jobs.map(encodeJob) ?? [],
        open: change?.openMatchers.map(encodeMatcher) ?? [],
        };
      }),
    ),
  ], { prepare: "stepwise_insert_runs" });
  const versions = new Map(started.map(({ run }) => [run.id, run.version]));
  for (const id of row?.runs ?? []) results.set(id, { version: versions.get(id)!, queued: [], deleted: [] });
  for (const id of row?.held ?? []) results.get(id)!.held = true;
  for (const job of row?.jobs ?? []) {
    const result = results.get(String(job.run_id));
    if (!result) continue;
    if (job.locked_by != null) result.continued = toJob(job);
    else result.queued.push(toJob(job));
  }
  return results;
}

function encodeJob(job: NewJob) {
  return {
    kind: job.kind,
    step_id: job.stepId ?? null,
    run_at: job.runAt?.toISOString() ?? null,
    delay_ms: job.delayMs ?? null,
    locked_by: job.lease?.owner ?? null,
    lease_ms: job.lease?.leaseMs ?? null,
    concurrency: job.concurrency ?? null,
  };
}

function encodeMatcher(m: MatcherRecord) {
  return {
    step_id: m.stepId,
    kind: m.kind,
    event_name: m.eventName,
    match_path: m.matchPath ?? null,
    match_value: json(m.matchValue),
    if_expr: m.ifExpr ?? null,
    expires_at: m.expiresAt?.toISOString() ?? null,
  };
}

/** The change as one JSON document, in the column shapes the statements read. */
function encodeChange(change: RunChange) {
  const { run } = change;
  return {
    run: {
      status: run.status ?? null,
      attempt: run.attempt ?? null,
      output: json(run.output),
      has_output: run.output !== undefined,
      error: json(run.error),
      has_error: run.error !== undefined,
      ended_at: run.endedAt?.toISOString() ?? null,
      state_bytes: run.stateBytes ?? null,
      has_paused: run.paused !== undefined,
      paused_at: run.paused?.at.toISOString() ?? null,
      paused_by: run.paused?.by ?? null,
    },
    steps: change.steps.map((step) => notLeftOut(step) && ({
      id: step.id,
      name: step.name,
      kind: step.kind,
      position: step.position,
      status: step.status,
      output: json(step.output),
      error: json(step.error),
      attempts: step.attempts,
      retry_policy: json(step.retry),
      usage: json(step.usage),
      wake_at: step.wakeAt?.toISOString() ?? null,
      started_at: step.startedAt.toISOString(),
      ended_at: step.endedAt?.toISOString() ?? null,
    })),
    jobs: change.jobs.map(encodeJob),
    drop_all: change.dropJobs === "all",
    drop: change.dropJobs === "all" ? [] : change.dropJobs.map((s) => ({ kind: s.kind, step_id: s.stepId ?? null })),
    open: change.openMatchers.map(encodeMatcher),
    close_all: change.closeMatchers === "all",
    close: change.closeMatchers === "all" ? [] : change.closeMatchers,
  };
}

/**
 * $1 run id, $2 expected version, $3 fence job id (null: none), $4 fence owner, $5 the change,
 * $6 whether the fence's job is taken unclaimed (free and due on this clock) instead of held by $4.
 * `lock` takes the run's row lock if its version is the expected one; `done` deletes the
 * fence's job only then and only for its lease holder; every write waits on `ok`, so when a
 * guard fails nothing at all is written. The jobs insert waits for `done` and `dropped`, so a
 * job replacing one this change deletes never meets it in the unique index.
 */
/** A queued job's columns from its encoded form `q` (see `encodeJob`), for `INSERT INTO jobs`. */
const JOB_INSERT_COLUMNS = "kind, run_id, step_id, run_at, ready_at, locked_by, locked_until, claims, concurrency";
const jobValues = (runId: string) => `q.kind, ${runId}, q.step_id,
         coalesce(q.run_at, now() + make_interval(secs => coalesce(q.delay_ms, 0) / 1000.0)),
         greatest(clock_timestamp(), coalesce(q.run_at, now() + make_interval(secs => coalesce(q.delay_ms, 0) / 1000.0))),
         q.locked_by,
         -- From the moment of writing, not now() (the transaction's start): a lease written late in a
         -- long transaction (a burst of events, a wait for a run's lock) would be over at its commit.
         CASE WHEN q.locked_by IS NULL THEN NULL ELSE clock_timestamp() + make_interval(secs => q.lease_ms / 1000.0) END,
         CASE WHEN q.locked_by IS NULL THEN 0 ELSE 1 END,
         q.concurrency`;
const JOB_RECORD = "q(kind text, step_id text, run_at timestamptz, delay_ms float8, locked_by text, lease_ms float8, concurrency jsonb)";
/**
 * The keys of the invocations `queued` wrote waiting for a slot, with their earliest due time,
 * as wakes for the next claim to fold into the queue of keys (see schema.sql): in the statement
 * that writes the jobs, so a job never waits on a key no claim looks at, and without locking
 * the key's row for the rest of the transaction.
 */
const KEYS_OF_QUEUED = `keyed AS (
  INSERT INTO concurrency_wakes (key, run_at)
  SELECT s.slot->>'key', min(q.run_at) FROM queued q, jsonb_array_elements(q.concurrency) AS s(slot)
  WHERE q.concurrency IS NOT NULL AND q.locked_by IS NULL
  GROUP BY 1
  RETURNING 1
)`;
const MATCHER_RECORD = "m(step_id text, kind text, event_name text, match_path text, match_value text, if_expr text, expires_at timestamptz)";

/** $1: the runs as `writeNewRuns` encodes them, each with its jobs and matchers. */
const INSERT_RUNS = `
WITH input AS (SELECT * FROM jsonb_array_elements($1::jsonb) AS r(doc)),
runs_in AS (
  INSERT INTO runs (id, function_id, event_id, status, attempt, parent_run_id, parent_step_id, started_at, version, state_bytes, concurrency, replay_of, rerun_from, traceparent, app_version, paused_at, paused_by)
  SELECT r.id, r.function_id, r.event_id, r.status, r.attempt, r.parent_run_id, r.parent_step_id, r.started_at, r.version, r.state_bytes, r.concurrency, r.replay_of, r.rerun_from, r.traceparent, r.app_version,
         -- A run of a paused function starts held, whatever an executor's cache of functions says.
         coalesce(r.paused_at, f.paused_at), CASE WHEN r.paused_at IS NOT NULL THEN r.paused_by WHEN f.paused_at IS NOT NULL THEN 'function' END
  FROM input, jsonb_to_record(input.doc) AS r(id text, function_id text, event_id text, status text, attempt int,
       parent_run_id text, parent_step_id text, started_at timestamptz, version int, state_bytes bigint, concurrency jsonb, replay_of text, rerun_from text,
       paused_at timestamptz, paused_by text, traceparent text, app_version text)
  LEFT JOIN functions f ON f.id = r.function_id
  ON CONFLICT (id) DO NOTHING
  RETURNING id, paused_at IS NOT NULL AS held
),
queued AS (
  INSERT INTO jobs (${JOB_INSERT_COLUMNS})
  SELECT ${jobValues("input.doc->>'id'")}
  FROM input, jsonb_to_recordset(input.doc->'jobs') AS ${JOB_RECORD}
  WHERE input.doc->>'id' IN (SELECT id FROM runs_in WHERE NOT held)
  ON CONFLICT DO NOTHING
  RETURNING *
),
${KEYS_OF_QUEUED},
opened AS (
  INSERT INTO matchers (run_id, step_id, kind, event_name, match_path, match_value, if_expr, expires_at)
  SELECT input.doc->>'id', m.step_id, m.kind, m.event_name, m.match_path, m.match_value, m.if_expr, m.expires_at
  FROM input, jsonb_to_recordset(input.doc->'open') AS ${MATCHER_RECORD}
  WHERE input.doc->>'id' IN (SELECT id FROM runs_in)
  ON CONFLICT (run_id, step_id) DO NOTHING
  RETURNING 1
)
SELECT (SELECT coalesce(json_agg(id), '[]'::json) FROM runs_in) AS runs,
       (SELECT coalesce(json_agg(id), '[]'::json) FROM runs_in WHERE held) AS held,
       (SELECT coalesce(json_agg(q ORDER BY q.id), '[]'::json) FROM queued q) AS jobs,
       (SELECT count(*) FROM opened) AS opened`;

/**
 * A run's invocation out with another worker keeps its concurrency slots until that worker is
 * done with it, when the run ends meanwhile (a cancel, a failure of another branch): the step is
 * still running in the app. Its worker then finds the run ended and deletes the job, applying
 * nothing; if that worker died, the claim that takes the job once its lease ran out does the same.
 */
const NOT_OUT_WITH_A_SLOT = "NOT (j.concurrency IS NOT NULL AND j.locked_by IS NOT NULL)";

const APPLY_CHANGE = `
WITH c AS (SELECT $5::jsonb AS doc),
lock AS (SELECT id FROM runs WHERE id = $1 AND version = $2 FOR UPDATE),
done AS (
  DELETE FROM jobs WHERE $3::bigint IS NOT NULL AND id = $3::bigint AND EXISTS (SELECT 1 FROM lock)
    AND CASE WHEN $6::boolean THEN run_at <= now() AND (locked_until IS NULL OR locked_until < now()) ELSE locked_by = $4::text END
  RETURNING id
),
ok AS (SELECT 1 AS ok WHERE EXISTS (SELECT 1 FROM lock) AND ($3::bigint IS NULL OR EXISTS (SELECT 1 FROM done))),
patch AS (
  SELECT p.* FROM c, jsonb_to_record(c.doc->'run') AS p(status text, attempt int, output text, has_output boolean,
    error text, has_error boolean, ended_at timestamptz, state_bytes bigint, has_paused boolean, paused_at timestamptz, paused_by text)
),
bumped AS (
  UPDATE runs SET version = runs.version + 1,
    status = coalesce(patch.status, runs.status),
    attempt = coalesce(patch.attempt, runs.attempt),
    output = CASE WHEN patch.has_output THEN patch.output ELSE runs.output END,
    error = CASE WHEN patch.has_error THEN patch.error ELSE runs.error END,
    ended_at = coalesce(patch.ended_at, runs.ended_at),
    state_bytes = coalesce(patch.state_bytes, runs.state_bytes),
    paused_at = CASE WHEN patch.has_paused THEN patch.paused_at ELSE runs.paused_at END,
    paused_by = CASE WHEN patch.has_paused THEN patch.paused_by ELSE runs.paused_by END
  FROM patch
  WHERE runs.id = $1 AND EXISTS (SELECT 1 FROM ok)
  RETURNING runs.version
),
saved AS (
  INSERT INTO steps (run_id, id, name, kind, position, status, output, error, attempts, retry_policy, usage, wake_at, started_at, ended_at)
  SELECT $1, s.id, s.name, s.kind, s.position, s.status, s.output, s.error, s.attempts, s.retry_policy, s.usage, s.wake_at, s.started_at, s.ended_at
  FROM c, jsonb_to_recordset(c.doc->'steps') AS s(id text, name text, kind text, position int, status text, output text,
       error text, attempts int, retry_policy text, usage text, wake_at timestamptz, started_at timestamptz, ended_at timestamptz)
  WHERE EXISTS (SELECT 1 FROM ok)
  ON CONFLICT (run_id, id) DO UPDATE SET
    status = EXCLUDED.status, output = EXCLUDED.output, error = EXCLUDED.error,
    attempts = EXCLUDED.attempts, retry_policy = EXCLUDED.retry_policy, usage = EXCLUDED.usage, wake_at = EXCLUDED.wake_at, ended_at = EXCLUDED.ended_at
  RETURNING 1
),
dropped AS (
  DELETE FROM jobs j
  WHERE j.run_id = $1 AND EXISTS (SELECT 1 FROM ok) AND j.id IS DISTINCT FROM $3::bigint
    AND (((SELECT (doc->>'drop_all')::boolean FROM c) AND ${NOT_OUT_WITH_A_SLOT})
      OR EXISTS (SELECT 1 FROM c, jsonb_to_recordset(c.doc->'drop') AS d(kind text, step_id text)
                 WHERE d.kind = j.kind AND d.step_id IS NOT DISTINCT FROM j.step_id))
  RETURNING j.id
),
queued AS (
  INSERT INTO jobs (${JOB_INSERT_COLUMNS})
  SELECT ${jobValues("$1")}
  FROM c, jsonb_to_recordset(c.doc->'jobs') AS ${JOB_RECORD}
  WHERE EXISTS (SELECT 1 FROM ok) AND (SELECT count(*) FROM done) >= 0 AND (SELECT count(*) FROM dropped) >= 0
  ON CONFLICT DO NOTHING
  RETURNING *
),
${KEYS_OF_QUEUED},
closed AS (
  DELETE FROM matchers m
  WHERE m.run_id = $1 AND EXISTS (SELECT 1 FROM ok)
    AND ((SELECT (doc->>'close_all')::boolean FROM c) OR m.step_id IN (SELECT jsonb_array_elements_text(doc->'close') FROM c))
  RETURNING 1
),
opened AS (
  INSERT INTO matchers (run_id, step_id, kind, event_name, match_path, match_value, if_expr, expires_at)
  SELECT $1, m.step_id, m.kind, m.event_name, m.match_path, m.match_value, m.if_expr, m.expires_at
  FROM c, jsonb_to_recordset(c.doc->'open') AS ${MATCHER_RECORD}
  WHERE EXISTS (SELECT 1 FROM ok) AND (SELECT count(*) FROM closed) >= 0
  ON CONFLICT (run_id, step_id) DO NOTHING
  RETURNING 1
)
SELECT (SELECT version FROM bumped) AS version,
       (SELECT coalesce(json_agg(q ORDER BY q.id), '[]'::json) FROM queued q) AS jobs,
       (SELECT coalesce(json_agg(d.id), '[]'::json) FROM (SELECT id FROM done UNION ALL SELECT id FROM dropped) d) AS deleted,
       (SELECT count(*) FROM saved) + (SELECT count(*) FROM opened) AS writes`;

/** A step whose output was not read (see `StepRecord.outputBytes`) written back would lose it: a bug, stopped here. */
function notLeftOut(step: StepRecord): true {
  if (step.outputBytes !== undefined && step.output === undefined) {
    throw new Error(`run ${step.runId}: step "${step.id}" was read without its output and must not be written back`);
  }
  return true;
}
