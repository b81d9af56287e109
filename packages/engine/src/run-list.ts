/**
 * The list of runs (`GET /api/runs`): its query, read from a URL's parameters with an error that
 * says which one is wrong; each run's summary (no steps: a page of fifty runs is one read); and
 * the cursor that continues a list. A cursor is where the page before stopped (its last run's
 * start, to the microsecond the store keeps, and its ID), so runs started meanwhile never shift
 * a page and none is listed twice or skipped.
 */
import { textProblem } from "@stepwise/protocol";
import { z } from "zod";
import { InputError } from "./errors.ts";
import { expressionError } from "./expressions.ts";
import { checkRange, decodeCursorJson, encodeCursorJson, inRange, parseLimit, parseTime, readParams } from "./list-params.ts";
import { isTerminal, RUN_STATUSES, type RunListPosition, type RunQuery, type RunRecord, type RunStatus } from "./records.ts";
import type { RunView } from "./views.ts";

export const DEFAULT_RUN_PAGE = 50;
export const MAX_RUN_PAGE = 500;
/** Longest `q`: a condition a person writes, evaluated over up to 2,000 runs a request. */
export const MAX_Q_LENGTH = 2_000;
/**
 * What `q` may not call: a regular expression (one can backtrack for minutes) and the macros
 * that loop over lists. Evaluated on the executor's one thread over thousands of runs, either
 * could stall every lane of the process.
 */
const COSTLY_IN_Q = /\.\s*(matches|all|exists|exists_one|map|filter)\s*\(/;

/** A run in a list: its view without output and steps (`GET /api/runs/:id` has them). */
export type RunSummary = Omit<RunView, "steps" | "output">;

/** One page of runs, newest first, and the cursor of the next page (null: this is the last). */
export interface RunPage {
  runs: RunSummary[];
  next: string | null;
}

export function runSummary(run: RunRecord): RunSummary {
  return {
    id: run.id,
    functionId: run.functionId,
    eventId: run.eventId,
    status: run.status,
    ...(run.error && { error: run.error }),
    startedAt: run.startedAt.toISOString(),
    ...(run.endedAt && { endedAt: run.endedAt.toISOString() }),
    ...(run.parentRunId && { parentRunId: run.parentRunId }),
    ...(run.replayOf && { replayOf: run.replayOf }),
    ...(run.rerunFrom && { rerunFrom: run.rerunFrom }),
    ...(run.paused && { paused: { at: run.paused.at.toISOString(), by: run.paused.by } }),
    ...(run.appVersion !== undefined && { appVersion: run.appVersion }),
  };
}

/** The cursor of the page after `position`. */
export function encodeCursor(position: RunListPosition): string {
  return encodeCursorJson([position.startedAt, position.id]);
}

const CursorSchema = z.tuple([z.string().datetime({ precision: 6 }), z.string().min(1).max(200)]);

function decodeCursor(cursor: string): RunListPosition {
  const parsed = CursorSchema.safeParse(decodeCursorJson(cursor));
  if (!parsed.success || !inRange(new Date(parsed.data[0])) || textProblem(parsed.data[1])) throw new InputError(`Invalid cursor "${cursor.slice(0, 60)}": pass the "next" of the page before, as it came`);
  return { startedAt: parsed.data[0], id: parsed.data[1] };
}

/**
 * The query of `GET /api/runs?function=&status=&since=&until=&q=&cursor=&limit=` (each parameter's
 * values as the URL gives them); an `InputError` names what is wrong.
 */
export function parseRunQuery(given: Record<string, string[]>): RunQuery {
  const params = readParams(given, ["function", "status", "since", "until", "q", "cursor", "limit"], "a run list");
  const query: RunQuery = { limit: DEFAULT_RUN_PAGE };
  if (params.function !== undefined) query.functionId = params.function;
  if (params.status !== undefined) {
    const statuses = params.status.split(",").map((status) => status.trim());
    const wrong = statuses.filter((status) => !RUN_STATUSES.includes(status as RunStatus));
    if (wrong.length > 0) throw new InputError(`Invalid status "${wrong[0]!.slice(0, 40)}": use one or more of ${RUN_STATUSES.join(", ")}, separated by commas`);
    query.statuses = statuses as RunStatus[];
  }
  if (params.since !== undefined) query.since = parseTime("since", params.since);
  if (params.until !== undefined) query.until = parseTime("until", params.until);
  checkRange(query.since, query.until, params);
  if (params.cursor !== undefined) query.after = decodeCursor(params.cursor);
  if (params.limit !== undefined) query.limit = parseLimit(params.limit, MAX_RUN_PAGE);
  if (params.q !== undefined) {
    const costly = COSTLY_IN_Q.exec(params.q)?.[1];
    const problem =
      params.q.trim() === "" ? "it is empty"
      : params.q.length > MAX_Q_LENGTH ? `it is ${params.q.length} characters long; the limit is ${MAX_Q_LENGTH}`
      : costly ? `${costly}() is not allowed in q (a regular expression or a loop over a list, run over thousands of runs, could stall the executor)`
      : expressionError(params.q);
    if (problem) throw new InputError(`Invalid q "${params.q.slice(0, 100)}": ${problem}. Give a CEL condition over run and event, e.g. event.data.plan == "pro" && run.status == "failed"`);
    query.q = params.q;
  }
  return query;
}

/** Runs one call of a bulk action touches by default (each call is one page: the caller follows `next`). */
export const DEFAULT_BULK_PAGE = 100;

/** The statuses of runs a cancel can still stop. */
export const LIVE_RUN_STATUSES: readonly RunStatus[] = RUN_STATUSES.filter((status) => !isTerminal(status));

/**
 * The filter of a bulk action (`POST /api/runs/cancel?…`, `POST /api/runs/replay?…`): the run
 * list's parameters, at least one of `function`, `status`, `since` and `until` (an action on
 * every run is never a typo away), and for a cancel only live statuses.
 */
export function parseBulkQuery(given: Record<string, string[]>, action: "cancel" | "replay"): RunQuery {
  const query = parseRunQuery({ limit: [String(DEFAULT_BULK_PAGE)], ...given });
  if (!query.functionId && !query.statuses && !query.since && !query.until && !query.q) {
    throw new InputError(
      `A bulk ${action} needs a filter: give at least one of function, status, since, until and q as query parameters, as GET /api/runs takes them` +
        (action === "cancel" ? `; to cancel every live run, give status=${LIVE_RUN_STATUSES.join(",")}` : ""),
    );
  }
  if (action === "cancel") {
    const live = (query.statuses ?? LIVE_RUN_STATUSES).filter((status) => !isTerminal(status));
    if (live.length === 0) throw new InputError(`status=${query.statuses!.join(",")} matches no run a cancel can stop: only ${LIVE_RUN_STATUSES.join(", ")} runs can be cancelled`);
    query.statuses = live;
  }
  return query;
}

/** What one call of `POST /api/runs/cancel` did; `next` continues with the page after (null: nothing is left). */
export interface BulkCancelResult {
  /** Runs the page held. */
  matched: number;
  /** Runs it cancelled. */
  cancelled: number;
  /** Runs of the page it left as they were, each with why (they ended meanwhile). */
  passed: Array<{ runId: string; reason: string }>;
  next: string | null;
}

/** What one call of `POST /api/runs/replay` did; `next` continues with the page after (null: nothing is left). */
export interface BulkReplayResult {
  matched: number;
  /** The runs it started, each with the run it replays. */
  replayed: Array<{ runId: string; replayOf: string }>;
  /** Runs of the page it did not replay, each with why (their function is no longer registered). */
  passed: Array<{ runId: string; reason: string }>;
  next: string | null;
}
