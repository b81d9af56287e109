/**
 * What the invariants judge: the runs one schedule led to, read from the store once, with the
 * ledger's step bodies grouped by step. Every check reads this and reports through `fail`.
 */
import { DERIVED_ID_PREFIX } from "@stepwise/protocol";
import type { StepRecord } from "@stepwise/engine";
import type { SqlClient } from "@stepwise/store-postgres";
import { SIM_APP_ID } from "../app.ts";
import type { BodyRun, Ledger } from "../ledger.ts";
import type { Played } from "../world.ts";

export type Row = Record<string, unknown>;

export interface Scene {
  sql: SqlClient;
  played: Played;
  ledger: Ledger;
  /** Every run of the schedule: those its start events started, and every run they led to. */
  runs: Map<string, Row>;
  runIds: string;
  steps: Row[];
  stepsByRun: Map<string, Row[]>;
  /** The ledger's step bodies of those runs, keyed `<runId>\n<stepId>`. */
  bodiesByStep: Map<string, BodyRun[]>;
  fail(line: string): void;
}

/** Function retries as the simulated app declares them. */
const RETRIES: Record<string, number> = { "sim-r0": 0, "sim-r2": 2, "sim-child": 2, "sim-responder": 2, "sim-idem": 2, "sim-debounce": 2, "sim-batch": 2, "sim-tick": 2, "sim-r0-failure": 0, "sim-r2-failure": 2 };

export const json = (text: unknown): unknown => (text == null ? undefined : JSON.parse(String(text)));
export const list = (values: string[]) => JSON.stringify(values);
/** A SQL set of the strings in a JSON array parameter. */
export const IN = (param: string) => `(SELECT jsonb_array_elements_text(${param}::jsonb))`;
/** A run's function ID without the app's prefix: "sim-r2". */
export const localId = (run: Row) => String(run.function_id).slice(SIM_APP_ID.length + 1);
export const functionRetries = (run: Row) => RETRIES[localId(run)] ?? 0;

/**
 * A step's retries: its own when its bodies ran with a policy (`step.run({ id, retries })`) or,
 * when none ran (every attempt failed before reaching the app), as its plan reported it; else
 * its function's.
 */
export const retriesOf = (run: Row, bodies: readonly BodyRun[], step?: Row) =>
  bodies.find((b) => b.retries !== undefined)?.retries ?? (json(step?.retry_policy) as { retries?: number } | undefined)?.retries ?? functionRetries(run);

export function stepRecord(row: Row): StepRecord {
  return { id: String(row.id), status: row.status, wakeAt: row.wake_at ? new Date(String(row.wake_at)) : undefined } as StepRecord;
}

export async function loadScene(sql: SqlClient, played: Played, fail: (line: string) => void): Promise<Scene> {
  const { ledger } = played;
  const runs = new Map<string, Row>();
  let frontier = await sql.query("SELECT * FROM runs WHERE event_id IN " + IN("$1"), [list(played.acked.map((a) => a.eventId))]);
  while (frontier.length > 0) {
    for (const run of frontier) runs.set(String(run.id), run);
    const ids = list(frontier.map((run) => String(run.id)));
    // Events a run led to have IDs derived from it: stepwise:<run>:<step>:<n>, stepwise:<run>:failed.
    const derivedFrom = `split_part(event_id, ':', 2) IN ${IN("$1")} AND event_id LIKE '${DERIVED_ID_PREFIX}%'`;
    frontier = (await sql.query(`SELECT * FROM runs WHERE parent_run_id IN ${IN("$1")} OR (${derivedFrom})`, [ids])).filter((run) => !runs.has(String(run.id)));
  }
  const runIds = list([...runs.keys()]);
  const steps = await sql.query("SELECT * FROM steps WHERE run_id IN " + IN("$1") + " ORDER BY run_id, position", [runIds]);
  const stepsByRun = new Map<string, Row[]>();
  for (const step of steps) stepsByRun.set(String(step.run_id), [...(stepsByRun.get(String(step.run_id)) ?? []), step]);
  const bodiesByStep = new Map<string, BodyRun[]>();
  for (const body of ledger.bodies) {
    if (!runs.has(body.runId)) continue;
    const key = `${body.runId}\n${body.stepId}`;
    bodiesByStep.set(key, [...(bodiesByStep.get(key) ?? []), body]);
  }
  return { sql, played, ledger, runs, runIds, steps, stepsByRun, bodiesByStep, fail };
}
