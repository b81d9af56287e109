/**
 * Rows to records. The drivers agree on types (jsonb parsed, timestamptz as Date, int8 as
 * string), so this mapping is the same for every driver. JSON values are stored as JSON text
 * (see schema.sql) and parsed here; rows that come as JSON documents (row_to_json) carry the
 * same text as strings and timestamps as ISO strings, which this mapping also reads.
 */
import type {
  AppDeployment,
  AppRecord,
  ConcurrencySlot,
  EventRecord,
  FunctionRecord,
  JobRecord,
  MatcherRecord,
  RunRecord,
  StepRecord,
} from "@stepwise/engine";
import type { FunctionConfig, SerializedError, StepKind, StepRetryPolicy, TokenUsage } from "@stepwise/protocol";

type Row = Record<string, unknown>;

const date = (value: unknown): Date => (value instanceof Date ? value : new Date(String(value)));
const optionalDate = (value: unknown): Date | undefined => (value == null ? undefined : date(value));
const optional = <T>(value: unknown): T | undefined => (value == null ? undefined : (value as T));

/** A JSON value as stored: its JSON text, or SQL NULL for undefined. */
export const json = (value: unknown): string | null => (value === undefined ? null : JSON.stringify(value));
/** A stored JSON value back: exactly what JSON.stringify wrote. */
export const fromJson = (text: unknown): unknown => (text == null ? undefined : JSON.parse(String(text)));

export function toApp(row: Row): AppRecord {
  const features = typeof row.features === "string" ? (JSON.parse(row.features) as unknown) : [];
  return {
    id: String(row.id),
    url: String(row.url),
    sdk: String(row.sdk),
    features: Array.isArray(features) ? features.map(String) : [],
    syncedAt: date(row.synced_at),
    ...(row.version != null && { version: String(row.version) }),
    ...(row.deployments != null && { deployments: deployments(row.deployments) }),
  };
}

function deployments(value: unknown): AppDeployment[] {
  const list = (typeof value === "string" ? JSON.parse(value) : value) as Array<{ version: string; url: string | null; synced_at: string; features: string; gone: boolean; refusing?: boolean }>;
  return list.map((d) => ({
    version: String(d.version),
    ...(d.url != null && { url: String(d.url) }),
    syncedAt: new Date(d.synced_at),
    features: (JSON.parse(d.features) as unknown[]).map(String),
    gone: d.gone === true,
    ...(d.refusing === true && { refusing: true as const }),
  }));
}

export function toFunction(row: Row): FunctionRecord {
  return {
    id: String(row.id),
    appId: String(row.app_id),
    localId: String(row.local_id),
    config: row.config as FunctionConfig,
    ...(row.paused_at != null && { pausedAt: date(row.paused_at) }),
  };
}

export function toEvent(row: Row): EventRecord {
  return { id: String(row.id), name: String(row.name), data: fromJson(row.data), ts: Number(row.ts), ...(row.traceparent != null && { traceparent: String(row.traceparent) }) };
}

export function toRun(row: Row): RunRecord {
  return {
    id: String(row.id),
    functionId: String(row.function_id),
    eventId: String(row.event_id),
    status: row.status as RunRecord["status"],
    attempt: Number(row.attempt),
    output: fromJson(row.output),
    error: fromJson(row.error) as SerializedError | undefined,
    parentRunId: optional(row.parent_run_id),
    parentStepId: optional(row.parent_step_id),
    startedAt: date(row.started_at),
    endedAt: optionalDate(row.ended_at),
    version: Number(row.version ?? 0),
    stateBytes: Number(row.state_bytes ?? 0),
    ...(row.concurrency != null && { concurrency: slots(row.concurrency) }),
    ...(row.replay_of != null && { replayOf: String(row.replay_of) }),
    ...(row.rerun_from != null && { rerunFrom: String(row.rerun_from) }),
    ...(row.traceparent != null && { traceparent: String(row.traceparent) }),
    ...(row.app_version != null && { appVersion: String(row.app_version) }),
    ...(row.paused_at != null && { paused: { at: date(row.paused_at), by: row.paused_by === "function" ? "function" : "operator" } }),
  };
}

/** Concurrency slots as stored (jsonb: parsed by the driver; as text inside a JSON document). */
function slots(value: unknown): ConcurrencySlot[] {
  return (typeof value === "string" ? JSON.parse(value) : value) as ConcurrencySlot[];
}

export function toStep(row: Row): StepRecord {
  return {
    runId: String(row.run_id),
    id: String(row.id),
    name: String(row.name),
    kind: row.kind as StepKind,
    position: Number(row.position),
    status: row.status as StepRecord["status"],
    output: fromJson(row.output),
    ...(row.output_bytes != null && { outputBytes: Number(row.output_bytes) }),
    error: fromJson(row.error) as SerializedError | undefined,
    attempts: Number(row.attempts),
    ...(row.retry_policy != null && { retry: fromJson(row.retry_policy) as StepRetryPolicy }),
    ...(row.usage != null && { usage: fromJson(row.usage) as TokenUsage }),
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
    // JSON text "null" is a frozen null to compare against; SQL NULL means the trigger had no such field.
    matchValue: fromJson(row.match_value),
    ifExpr: optional(row.if_expr),
    expiresAt: optionalDate(row.expires_at),
  };
}

/** What `toJob` reads (named, not *: a prepared statement's result type must not change when a later schema adds a column). */
export const JOB_COLUMNS = "id, kind, run_id, step_id, run_at, claims, failures, last_error, concurrency";

export function toJob(row: Row): JobRecord {
  return {
    id: String(row.id),
    kind: row.kind as JobRecord["kind"],
    runId: String(row.run_id),
    stepId: optional(row.step_id),
    runAt: date(row.run_at),
    claims: Number(row.claims),
    failures: Number(row.failures ?? 0),
    lastError: optional(row.last_error),
    ...(row.concurrency != null && { concurrency: slots(row.concurrency) }),
  };
}
