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
import { RUN_STATUSES, type RunListPosition, type RunQuery, type RunRecord, type RunStatus } from "./records.ts";
import type { RunView } from "./views.ts";

export const DEFAULT_RUN_PAGE = 50;
export const MAX_RUN_PAGE = 500;

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
  };
}

/** Base64url of the position's JSON (btoa, not Buffer: the engine runs on Workers too; run IDs and times are ASCII). */
export function encodeCursor(position: RunListPosition): string {
  return btoa(JSON.stringify([position.startedAt, position.id])).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const CursorSchema = z.tuple([z.string().datetime({ precision: 6 }), z.string().min(1).max(200)]);

/** Years the store's times hold (Postgres has no year 0, and JavaScript's dates go past 9999). */
const EARLIEST = Date.UTC(1, 0, 1);
const LATEST = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
const inRange = (date: Date) => !Number.isNaN(date.getTime()) && date.getTime() >= EARLIEST && date.getTime() <= LATEST;

function decodeCursor(cursor: string): RunListPosition {
  let decoded: unknown;
  try {
    decoded = JSON.parse(atob(cursor.replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    decoded = undefined;
  }
  const parsed = CursorSchema.safeParse(decoded);
  if (!parsed.success || !inRange(new Date(parsed.data[0])) || textProblem(parsed.data[1])) throw new InputError(`Invalid cursor "${cursor.slice(0, 60)}": pass the "next" of the page before, as it came`);
  return { startedAt: parsed.data[0], id: parsed.data[1] };
}

/** A date (midnight UTC) or a time with its zone: a time without one would be read in the executor's own. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/;

function parseTime(name: string, value: string): Date {
  const date = new Date(value);
  if (!ISO_TIME.test(value) || !inRange(date)) {
    throw new InputError(`Invalid ${name} "${value.slice(0, 60)}": give a date or an ISO 8601 time with its zone, e.g. 2026-12-05 or 2026-12-05T09:00:00Z`);
  }
  return date;
}

/**
 * The query of `GET /api/runs?function=&status=&since=&until=&cursor=&limit=` (each parameter's
 * values as the URL gives them); an `InputError` names what is wrong.
 */
export function parseRunQuery(given: Record<string, string[]>): RunQuery {
  const known = new Set(["function", "status", "since", "until", "cursor", "limit"]);
  const unknown = Object.keys(given).filter((name) => !known.has(name));
  if (unknown.length > 0) throw new InputError(`Unknown parameter ${unknown.map((name) => `"${name.slice(0, 40)}"`).join(", ")}: a run list takes ${[...known].join(", ")}`);
  const params: Record<string, string | undefined> = {};
  for (const [name, values] of Object.entries(given)) {
    if (values.length > 1) throw new InputError(`Parameter "${name}" given ${values.length} times: give it once (several statuses go in one, separated by commas)`);
    const problem = textProblem(values[0]!);
    if (problem) throw new InputError(`Parameter "${name}" ${problem}`);
    params[name] = values[0];
  }
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
  if (query.since && query.until && query.since >= query.until) throw new InputError(`Invalid range: since (${params.since}) must be before until (${params.until})`);
  if (params.cursor !== undefined) query.after = decodeCursor(params.cursor);
  if (params.limit !== undefined) {
    const limit = Number(params.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_RUN_PAGE) throw new InputError(`Invalid limit "${params.limit.slice(0, 20)}": give a whole number from 1 to ${MAX_RUN_PAGE}`);
    query.limit = limit;
  }
  return query;
}
