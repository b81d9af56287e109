/**
 * Rows to records. The drivers agree on types (jsonb parsed, timestamptz as Date, int8 as
 * string), so this mapping is the same for PGlite and the Neon driver.
 */
import type {
  AppRecord,
  EventRecord,
  FunctionRecord,
  JobRecord,
  MatcherRecord,
  RunRecord,
  StepRecord,
} from "@stepwise/engine";
import type { FunctionConfig, SerializedError, StepKind } from "@stepwise/protocol";

type Row = Record<string, unknown>;

const date = (value: unknown): Date => (value instanceof Date ? value : new Date(String(value)));
const optionalDate = (value: unknown): Date | undefined => (value == null ? undefined : date(value));
const optional = <T>(value: unknown): T | undefined => (value == null ? undefined : (value as T));

/** JSON values go in as text cast to jsonb; undefined becomes SQL NULL. */
export const json = (value: unknown): string | null => (value === undefined ? null : JSON.stringify(value));

export function toApp(row: Row): AppRecord {
  return { id: String(row.id), url: String(row.url), sdk: String(row.sdk), syncedAt: date(row.synced_at) };
}

export function toFunction(row: Row): FunctionRecord {
  return {
    id: String(row.id),
    appId: String(row.app_id),
    localId: String(row.local_id),
    config: row.config as FunctionConfig,
  };
}

export function toEvent(row: Row): EventRecord {
  return { id: String(row.id), name: String(row.name), data: row.data, ts: Number(row.ts) };
}

export function toRun(row: Row): RunRecord {
  return {
    id: String(row.id),
    functionId: String(row.function_id),
    eventId: String(row.event_id),
    status: row.status as RunRecord["status"],
    attempt: Number(row.attempt),
    output: optional(row.output),
    error: optional<SerializedError>(row.error),
    parentRunId: optional(row.parent_run_id),
    parentStepId: optional(row.parent_step_id),
    startedAt: date(row.started_at),
    endedAt: optionalDate(row.ended_at),
    version: Number(row.version ?? 0),
  };
}

export function toStep(row: Row): StepRecord {
  return {
    runId: String(row.run_id),
    id: String(row.id),
    name: String(row.name),
    kind: row.kind as StepKind,
    position: Number(row.position),
    status: row.status as StepRecord["status"],
    output: optional(row.output),
    error: optional<SerializedError>(row.error),
    attempts: Number(row.attempts),
    wakeAt: optionalDate(row.wake_at),
    startedAt: date(row.started_at),
    endedAt: optionalDate(row.ended_at),
  };
}

export function toMatcher(row: Row): MatcherRecord {
  return {
    runId: String(row.run_id),
    stepId: String(row.step_id),
    kind: row.kind as MatcherRecord["kind"],
    eventName: String(row.event_name),
    matchPath: optional(row.match_path),
    // A frozen JSON null is a real value to compare against; SQL NULL means "no match field".
    matchValue: row.match_path == null ? undefined : (row.match_value ?? null),
    ifExpr: optional(row.if_expr),
    expiresAt: optionalDate(row.expires_at),
  };
}

export function toJob(row: Row): JobRecord {
  return {
    id: String(row.id),
    kind: row.kind as JobRecord["kind"],
    runId: String(row.run_id),
    stepId: optional(row.step_id),
    runAt: date(row.run_at),
    claims: Number(row.claims),
  };
}
