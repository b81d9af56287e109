/**
 * A checkpoint as one statement: a `step.run` result committed while its invocation still runs,
 * only if that invocation still holds its job's lease (the same claim: a job claimed again, by
 * anyone, is another invocation), the run has not ended and the step is not stored yet. Nothing
 * else of the run is read or written, so a checkpoint costs the same at step 1,000 as at step 1.
 *
 * Locks are taken in the order every transaction takes them, the run's row first, then the
 * job's: a cancel (which locks the run, then deletes its jobs) either commits first, and the
 * checkpoint finds the job gone, or waits for the checkpoint, and the step stays as committed.
 */
import type { CheckpointResult, CheckpointWrite } from "@stepwise/engine";
import type { SqlExecutor } from "./sql.ts";
import { json } from "./rows.ts";

export async function writeCheckpoint(sql: SqlExecutor, write: CheckpointWrite): Promise<CheckpointResult> {
  const { step, lease } = write;
  const [row] = await sql.query<{ found: boolean; status: string | null; same_function: boolean; full: boolean; leased: boolean; version: number | null }>(CHECKPOINT, [
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
  ], { prepare: "stepwise_checkpoint" });
  if (!row?.found || !row.same_function) return { ok: false, refused: "lease-lost" };
  if (row.version !== null && row.version !== undefined) return { ok: true, wasQueued: row.status === "queued", version: Number(row.version) };
  if (row.status === "completed" || row.status === "failed" || row.status === "cancelled") return { ok: false, refused: "run-ended" };
  if (row.full) return { ok: false, refused: "limit" };
  if (!row.leased) return { ok: false, refused: "lease-lost" };
  return { ok: false, refused: "step-stored" };
}

/**
 * $1 run, $2 its function, $3 job, $4 lease owner, $5 the claim, $6 lease extension (ms),
 * $7 step id, $8 name, $9 position, $10 output (JSON text), $11 started at, $12 output bytes,
 * $13 the run's state limit.
 */
const CHECKPOINT = `
WITH run AS (
  SELECT status, function_id, state_bytes FROM runs WHERE id = $1 FOR UPDATE
),
open AS (
  SELECT 1 FROM run
  WHERE status NOT IN ('completed', 'failed', 'cancelled') AND function_id = $2 AND state_bytes + $12::bigint <= $13::bigint
),
lease AS (
  UPDATE jobs SET locked_until = greatest(locked_until, now() + make_interval(secs => $6::float8 / 1000))
  WHERE id = $3::bigint AND run_id = $1 AND kind = 'invoke' AND step_id IS NULL
    AND locked_by = $4 AND claims = $5::int AND locked_until > now() AND EXISTS (SELECT 1 FROM open)
  RETURNING id
),
saved AS (
  INSERT INTO steps (run_id, id, name, kind, position, status, output, attempts, started_at, ended_at)
  SELECT $1, $7, $8, 'run', $9::int, 'completed', $10::text, 1, $11::timestamptz, now() FROM lease
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
       (SELECT status FROM run) AS status,
       coalesce((SELECT function_id = $2 FROM run), false) AS same_function,
       coalesce((SELECT state_bytes + $12::bigint > $13::bigint FROM run), false) AS full,
       EXISTS (SELECT 1 FROM lease) AS leased,
       (SELECT version FROM bumped) AS version`;
