/**
 * The list of runs (`GET /api/runs`): its query, read from a URL's parameters with an error that
 * says which one is wrong; each run's summary (no steps: a page of fifty runs is one read); and
 * the cursor that continues a list. A cursor is where the page before stopped (its last run's
 * start, to the microsecond the store keeps, and its ID), so runs started meanwhile never shift
 * a page and none is listed twice or skipped.
 */
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

function decodeCursor(cursor: string): RunListPosition {
  let decoded: unknown;
  try {
    decoded = JSON.parse(atob(cursor.replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    decoded = undefined;
  }
  const parsed = CursorSchema.safeParse(decoded);
  if (!parsed.success) throw new InputError(`Invalid cursor "${cursor.slice(0, 60)}": pass the "next" of the page before, as it came`);
  return { startedAt: parsed.data[0], id: parsed.data[1] };
}

function parseTime(name: string, value: string): Date {
  const date = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(date.getTime())) {
    throw new InputError(`Invalid ${name} "${value.slice(0, 60)}": give an ISO 8601 time, e.g. 2026-12-05T09:00:00Z`);
  }
  return date;
}

/** The query of `GET /api/runs?function=&status=&since=&until=&cursor=&limit=`; an `InputError` names what is wrong. */
export function parseRunQuery(params: Record<string, string | undefined>): RunQuery {
  const known = new Set(["function", "status", "since", "until", "cursor", "limit"]);
  const unknown = Object.keys(params).filter((name) => !known.has(name));
  if (unknown.length > 0) throw new InputError(`Unknown parameter ${unknown.map((name) => `"${name}"`).join(", ")}: a run list takes ${[...known].join(", ")}`);
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
