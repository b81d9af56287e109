/**
 * What the executor keeps, as plain records. The store adapters map rows to these and back;
 * nothing SQL- or Redis-specific leaks past this file.
 */
import type { FunctionConfig, SerializedError, StepKind, StepRetryPolicy, TokenUsage } from "@stepwise/protocol";

/** `skipped`: the event matched, but flow control (`rateLimit`) started no run; the run's error says why. */
export type RunStatus = "queued" | "running" | "sleeping" | "waiting" | "completed" | "failed" | "cancelled" | "skipped";
export const TERMINAL_RUN_STATUSES: readonly RunStatus[] = ["completed", "failed", "cancelled", "skipped"];
export const RUN_STATUSES: readonly RunStatus[] = ["queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled", "skipped"];

/** Which runs a list shows (`Store.listRuns`): newest first, each filter optional. */
export interface RunQuery {
  /** The function's global ID (as run views and `GET /api/functions` show it). */
  functionId?: string;
  statuses?: RunStatus[];
  /** Started at or after. */
  since?: Date;
  /** Started before. */
  until?: Date;
  /** Only runs listed after this one: the `next` of the page before. */
  after?: RunListPosition;
  limit: number;
  /** A CEL condition over `run` and `event` (see `run-finder.ts`); the store never sees it. */
  q?: string;
}

/** Which events a list shows (`Store.listEvents`): newest first by arrival, each filter optional. */
export interface EventQuery {
  name?: string;
  /** Received at or after. */
  since?: Date;
  /** Received before. */
  until?: Date;
  /** Only events that arrived before this one: its arrival number, the `next` of the page before. */
  after?: string;
  limit: number;
}

/** An event as the record keeps it: with when it arrived and its place in the order of arrival. */
export interface StoredEvent extends EventRecord {
  receivedAt: Date;
  /** Order of arrival (a decimal integer): what a cursor of the event list holds. */
  seq: string;
}

/** Where a list of runs stopped: the last run's start (to the microsecond, as the store keeps it) and ID. */
export interface RunListPosition {
  startedAt: string;
  id: string;
}

/** Whether a run has ended: nothing about it changes any more. */
export function isTerminal(status: RunStatus): boolean {
  return TERMINAL_RUN_STATUSES.includes(status);
}

/**
 * A step's lifecycle. `planned`, `retrying`, `sleeping`, `waiting` and `invoking` are in
 * flight: the executor owes the run a wake-up for them. `completed` and `failed` are final;
 * `cancelled` marks a step that was in flight when its run ended.
 */
export type StepStatus =
  | "planned"
  | "retrying"
  | "sleeping"
  | "waiting"
  | "invoking"
  | "completed"
  | "failed"
  | "cancelled";
export const IN_FLIGHT_STEP_STATUSES: readonly StepStatus[] = ["planned", "retrying", "sleeping", "waiting", "invoking"];

/** Whether the executor still owes this step a result. */
export function isInFlight(step: { status: StepStatus }): boolean {
  return IN_FLIGHT_STEP_STATUSES.includes(step.status);
}

export interface AppRecord {
  id: string;
  /** Where the app's current deployment serves `/api/durable`. */
  url: string;
  sdk: string;
  /** What its SDK declared it understands (`APP_FEATURES`); an app registered by an older SDK has none. */
  features: string[];
  syncedAt: Date;
  /** The version it last registered with (absent: an SDK that names none). */
  version?: string;
  /** The versions the executor knows of, oldest first (see `app_versions` in schema.sql). */
  deployments?: AppDeployment[];
}

/** One version of an app, and the URL of its own deployment where the app named one. */
export interface AppDeployment {
  version: string;
  /** Absent: the app's URL serves this version (and moves with the app). */
  url?: string;
  syncedAt: Date;
  /** What that deployment's SDK understands: an older one may lack what the current one reads. */
  features: string[];
  /** Found gone (404, 410, or connections refused for a while): its runs go to the app's URL. */
  gone: boolean;
  /** It refused connections lately and has not answered since (as the registry last read it). */
  refusing?: true;
}

export interface FunctionRecord {
  /** Global ID: `<appId>-<localId>`. */
  id: string;
  appId: string;
  localId: string;
  config: FunctionConfig;
  /** Set while an operator has the function paused: its new runs start held. */
  pausedAt?: Date;
}

export interface EventRecord {
  id: string;
  name: string;
  data: unknown;
  /** Milliseconds since the epoch, as the sender gave it or the time of receipt. */
  ts: number;
  /** The trace its sender was in (W3C traceparent), if it said: the runs it starts join it. */
  traceparent?: string;
}

/** An event as a function sees it (`{ id, name, data, ts }`): the trace it came with stays the executor's. */
export function eventForApp(event: EventRecord): EventRecord {
  return event.traceparent === undefined ? event : { id: event.id, name: event.name, data: event.data, ts: event.ts };
}

/**
 * One concurrency limit as a run holds it: the key its steps count against (scope, function or
 * app, and the hash of the key's value) and the limit, both fixed when the run started.
 */
export interface ConcurrencySlot {
  key: string;
  limit: number;
}

export interface RunRecord {
  id: string;
  functionId: string;
  eventId: string;
  status: RunStatus;
  /** Failed attempts of the function body outside steps. */
  attempt: number;
  output?: unknown;
  error?: SerializedError;
  parentRunId?: string;
  parentStepId?: string;
  startedAt: Date;
  endedAt?: Date;
  /** Bumped by every change of the run: the compare-and-swap token of optimistic writes. */
  version: number;
  /** Bytes of JSON the run's stored outputs and errors hold: every invocation sends them. */
  stateBytes: number;
  /** The concurrency limits its invocations take a slot of (none: unlimited). */
  concurrency?: ConcurrencySlot[];
  /** Started by an operator from this run's event (a replay or a rerun), not by a trigger. */
  replayOf?: string;
  /** A rerun: the step it ran again from; the steps before it were copied from `replayOf`. */
  rerunFrom?: string;
  /** The trace its spans join (its event's traceparent), if its event came with one. */
  traceparent?: string;
  /** Paused: it has no job, so nothing invokes it or fires its timers until it is resumed (null or absent: not paused). */
  paused?: RunPause | null;
  /** The version of its app it started on: it is invoked at that deployment while it answers. */
  appVersion?: string;
}

/**
 * Who paused a run: an operator (`POST /api/runs/:id/pause`), or its function's pause (it
 * started while the function was paused, and its function's resume runs or skips it).
 */
export interface RunPause {
  at: Date;
  by: "operator" | "function";
}

export interface StepRecord {
  runId: string;
  id: string;
  name: string;
  kind: StepKind;
  position: number;
  status: StepStatus;
  output?: unknown;
  /**
   * Set, with `output` left undefined, when the output was not read with the run's state
   * because it is larger than the reader asked for (see `Store.loadRunState`): its size as
   * JSON. Such a record is never written back (it would lose the output).
   */
  outputBytes?: number;
  error?: SerializedError;
  /** Attempts made so far (a `run` step that succeeded first time has 1). */
  attempts: number;
  /**
   * A `run` step's own retry policy, as its app last reported it (with the step's plan or a
   * failure): kept so that a failure the app cannot report (a 502 page, a timeout) is counted
   * against the step's retries too, not its function's.
   */
  retry?: StepRetryPolicy;
  /** Tokens the step's model call spent (`step.ai.infer`, `step.ai.wrap`), where it reported them. */
  usage?: TokenUsage;
  /** For a sleeping step, when it wakes; for a wait or an invoke with a timeout, when that passes; for a retrying step, when it is retried. */
  wakeAt?: Date;
  startedAt: Date;
  endedAt?: Date;
}

/** An open matcher: a `step.waitForEvent` or a `cancelOn` waiting for an event. */
export interface MatcherRecord {
  runId: string;
  /** The waiting step, or `cancel:<n>` for the n-th cancelOn entry. */
  stepId: string;
  kind: "wait" | "cancel";
  eventName: string;
  matchPath?: string;
  /**
   * The trigger's value at `matchPath`, frozen when the matcher opened. Undefined (with a
   * `matchPath`) when the trigger had no such field: then no event matches.
   */
  matchValue?: unknown;
  ifExpr?: string;
  expiresAt?: Date;
}

/**
 * A unit of queued work. `invoke` calls the function (only `stepId` when it targets one step);
 * the others are timers: a sleep ends, a wait times out, an invoked child takes too long.
 * A run has at most one job per kind and step (the store enforces it).
 */
export type JobKind = "invoke" | "wake" | "wait-timeout" | "invoke-timeout" | "finish-timeout" | "cron";
/**
 * Jobs that fire a timer (no invocation of their own): a sleep ends, a wait or an invoke times
 * out, a run passes its function's `timeouts.finish`.
 */
export const TIMER_KINDS: ReadonlySet<JobKind> = new Set<JobKind>(["wake", "wait-timeout", "invoke-timeout", "finish-timeout"]);

/**
 * A cron trigger's next tick is a job like a sleep's end, so every queue, lease and scheduler
 * (claim loop, Redis, the Worker's alarm) handles it: kind `cron`, the step ID holding the
 * pattern and, in place of a run, `cron:<function ID>` (no run exists until the tick).
 */
export const CRON_JOB_PREFIX = "cron:";

/** The `runId` of a function's cron jobs. */
export function cronJobRunId(functionId: string): string {
  return `${CRON_JOB_PREFIX}${functionId}`;
}

/** A cron trigger's next tick, as the executor asks the store to keep it. */
export interface CronTick {
  functionId: string;
  /** The trigger's pattern, as written. */
  cron: string;
  runAt: Date;
}

export interface NewJob {
  kind: JobKind;
  runId: string;
  stepId?: string;
  /** Due at this time (a time the app chose: a sleep's end, a timeout, a Retry-After). */
  runAt?: Date;
  /** Due this long after the commit, on the store's clock (backoff). Neither: due at once. */
  delayMs?: number;
  /** Written already leased to this worker, which runs it next (a continuation). */
  lease?: { owner: string; leaseMs: number };
  /** An invocation of a run with concurrency limits: claimed only while each has room. */
  concurrency?: ConcurrencySlot[];
}

export interface JobRecord {
  id: string;
  kind: JobKind;
  runId: string;
  stepId?: string;
  /** When it is due, on the store's clock. */
  runAt: Date;
  /** How often the job was claimed: more than once means a worker died or gave it back. */
  claims: number;
  /** How often applying it failed inside the executor (not the app's failures: those are answers). */
  failures: number;
  /** The last of those failures, for the run's error when they run out. */
  lastError?: string;
  /** Its run's concurrency limits, for an invocation (see {@link NewJob.concurrency}). */
  concurrency?: ConcurrencySlot[];
}

/** A run as one read sees it: the basis of every transition. */
export interface RunState {
  run: RunRecord;
  /** By position. */
  steps: StepRecord[];
  /** The triggering event (a batch's first). */
  event: EventRecord;
  /** A batch's run's events in order of arrival, `event` first (however few); absent for a run not started as a batch. */
  events?: EventRecord[];
}
