/**
 * A checkpoint as one statement: a `step.run` result committed while its invocation still runs,
 * only if that invocation still holds its job's lease (the same claim: a job claimed again, by
 * anyone, is another invocation), the run has not ended and the step is not stored yet. Nothing
 * else of the run is read or written, so a checkpoint costs the same at step 1,000 as at step 1.
 *
 * The job's lease is extended only once less than half of it is left: a job row updated on
 * every step was a new tuple and an entry in each of its five indexes per step, for a lease the
 * heartbeat keeps alive anyway (and the fence reads the lease, it does not need it renewed).
 *
 * Locks are taken in the order every transaction takes them, the run's row first, then the
 * job's: a cancel (which locks the run, then deletes its jobs) either commits first, and the
 * checkpoint finds the job gone, or waits for the checkpoint, and the step stays as committed.
 *
 * Each statement comes in two forms: one that skips rows another transaction holds (`SKIP
 * LOCKED`, answering {@link HELD} for such a checkpoint), one that waits for them; and one
 * statement carries many checkpoints of distinct runs, skipping. `checkpoint-writer.ts` decides
 * which goes when.
 */
import type { CheckpointResult, CheckpointWrite } from "@stepwise/engine";
import { HELD, type SqlExecutor } from "./sql.ts";
import { json } from "./rows.ts";

export type Outcome = CheckpointResult | typeof HELD;

type OutcomeRow = { found: boolean; held: boolean; status: string | null; same_function: boolean; full: boolean; leased: boolean; version: number | null };

/** What the statement's row says happened to one checkpoint. */
function outcome(row: OutcomeRow | undefined): Outcome {
  if (row?.held) return HELD;
  if (!row?.found || !row.same_function) return { ok: false, refused: "lease-lost" };
  if (row.version !== null && row.version !== undefined) return { ok: true, wasQueued: row.status === "queued", version: Number(row.version) };
  if (row.status === "completed" || row.status === "failed" || row.status === "cancelled") return { ok: false, refused: "run-ended" };
  if (row.full) return { ok: false, refused: "limit" };
  if (!row.leased) return { ok: false, refused: "lease-lost" };
  return { ok: false, refused: "step-stored" };
}

/** Checkpoints of distinct runs in one statement, skipping what is locked; results in the order given. */
export async function writeCheckpoints(sql: SqlExecutor, writes: CheckpointWrite[]): Promise<Outcome[]> {
  const input = writes.map((write, idx) => ({
    idx,
    run_id: write.runId,
    function_id: write.functionId,
    job_id: write.lease.jobId,
    owner: write.lease.owner,
    claims: write.lease.claims,
    lease_ms: write.leaseMs,
    step_id: write.step.id,
    name: write.step.name,
    position: write.step.position,
    output: json(write.step.output),
    usage: json(write.step.usage),
    started_at: write.step.startedAt.toISOString(),
    ended_at: endedAt(write),
    bytes: write.bytes,
    max_bytes: write.maxRunStateBytes,
  }));
  // The runs and jobs also go as arrays (`stepwise_checkpoints` in schema.sql says why).
  const runIds = writes.map((write) => write.runId);
  const jobIds = writes.map((write) => write.lease.jobId);
  const rows = await sql.query<OutcomeRow & { idx: number }>(CHECKPOINTS, [JSON.stringify(input), JSON.stringify(runIds), JSON.stringify(jobIds)], { prepare: "stepwise_checkpoints_fn" });
  const byIndex = new Map(rows.map((row) => [Number(row.idx), row]));
  return writes.map((_, idx) => outcome(byIndex.get(idx)));
}

/**
 * When the step ended by the executor's clock, as its start is: the snapshot the invocation's
 * answer is applied to holds the same time, so a step the answer names (a sleep) starts no
 * earlier than the stored end of the step before it. (`now()` in the statement was later by
 * however long the checkpoint waited for its group commit: 12 ms under load.)
 */
const endedAt = (write: CheckpointWrite) => (write.step.endedAt ?? write.step.startedAt).toISOString();

/** One checkpoint; `skip` leaves a locked run or job alone (answering HELD), `wait` waits for it. */
export async function writeCheckpoint(sql: SqlExecutor, write: CheckpointWrite, locks: "skip" | "wait"): Promise<Outcome> {
  const { step, lease } = write;
  const [row] = await sql.query<OutcomeRow>(CHECKPOINT[locks], [
    write.runId,
    write.functionId,
    lease.jobId,
    lease.owner,
    lease.claims,
    write.leaseMs,
    step.id,
    step.name,
    step.position,
    json(step.output),
    step.startedAt.toISOString(),
    write.bytes,
    write.maxRunStateBytes,
    json(step.usage),
    endedAt(write),
  ], { prepare: `stepwise_checkpoint_${locks}` });
  return outcome(row);
}

/**
 * Whether the skipping statement left the checkpoint alone: its run, or its job, is there when
 * read without a lock but was not locked. (A statement that waited for its locks has nothing
 * to say here: a row it waited for and found deleted is still in the statement's snapshot.)
 */
const HELD_ONE = `(NOT EXISTS (SELECT 1 FROM run) AND EXISTS (SELECT 1 FROM runs WHERE id = $1))
         OR (EXISTS (SELECT 1 FROM open) AND NOT EXISTS (SELECT 1 FROM job) AND EXISTS (
           SELECT 1 FROM jobs WHERE id = $3::bigint AND run_id = $1 AND locked_by = $4 AND claims = $5::int AND locked_until > now()))`;

/**
 * $1 run, $2 its function, $3 job, $4 lease owner, $5 the claim, $6 lease extension (ms),
 * $7 step id, $8 name, $9 position, $10 output (JSON text), $11 started at, $12 output bytes,
 * $13 the run's state limit, $14 the tokens it spent (JSON text, or null), $15 ended at.
 */
const checkpointSql = (locks: "skip" | "wait") => {
  const skip = locks === "skip" ? "SKIP LOCKED" : "";
  return `
WITH run AS (
  SELECT status, function_id, state_bytes, paused_at FROM runs WHERE id = $1 FOR UPDATE ${skip}
),
-- A paused run takes no checkpoint (refused as a lost lease: the invocation must stop), even
-- from an invocation that kept its job because it holds a concurrency slot.
open AS (
  SELECT 1 FROM run
  WHERE status NOT IN ('completed', 'failed', 'cancelled', 'skipped') AND paused_at IS NULL AND function_id = $2 AND state_bytes + $12::bigint <= $13::bigint
),
job AS (
  SELECT id FROM jobs
  WHERE id = $3::bigint AND run_id = $1 AND kind = 'invoke' AND step_id IS NULL
    AND locked_by = $4 AND claims = $5::int AND locked_until > now() AND EXISTS (SELECT 1 FROM open)
  FOR UPDATE ${skip}
),
lease AS (
  UPDATE jobs SET locked_until = now() + make_interval(secs => $6::float8 / 1000)
  WHERE id IN (SELECT id FROM job) AND locked_until < now() + make_interval(secs => $6::float8 / 2000)
),
saved AS (
  INSERT INTO steps (run_id, id, name, kind, position, status, output, usage, attempts, started_at, ended_at)
  SELECT $1, $7, $8, 'run', $9::int, 'completed', $10::text, $14::text, 1, $11::timestamptz, $15::timestamptz FROM job
  ON CONFLICT (run_id, id) DO NOTHING
  RETURNING 1
),
bumped AS (
  UPDATE runs SET version = version + 1, state_bytes = state_bytes + $12::bigint,
    status = CASE WHEN status = 'queued' THEN 'running' ELSE status END
  WHERE id = $1 AND EXISTS (SELECT 1 FROM saved)
  RETURNING version
)
SELECT EXISTS (SELECT 1 FROM run) AS found,
       ${locks === "skip" ? HELD_ONE : "false"} AS held,
       (SELECT status FROM run) AS status,
       coalesce((SELECT function_id = $2 FROM run), false) AS same_function,
       coalesce((SELECT state_bytes + $12::bigint > $13::bigint FROM run), false) AS full,
       EXISTS (SELECT 1 FROM job) AS leased,
       (SELECT version FROM bumped) AS version`;
};
const CHECKPOINT = { skip: checkpointSql("skip"), wait: checkpointSql("wait") };

/**
 * The same for many runs (distinct), skipping locked rows: `stepwise_checkpoints` in schema.sql,
 * a function so that its plan reaches every row through its key however old the planner's
 * statistics are (it says why). $1 the checkpoints as JSON, each with its index; $2 and $3 their
 * runs' and jobs' IDs as JSON arrays.
 */
const CHECKPOINTS = `SELECT idx, found, held, status, same_function, "full", leased, version FROM stepwise_checkpoints($1::jsonb, $2::jsonb, $3::jsonb)`;
