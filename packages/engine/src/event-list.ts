/**
 * The list of events (`GET /api/events`): newest first by arrival, each with the runs it
 * started (and the batch runs it joined), so an operator can go from "I sent this" to what it
 * did. A cursor is the arrival number of the page's last event: events arriving meanwhile never
 * shift a page.
 */
import { InputError } from "./errors.ts";
import { checkRange, decodeCursorJson, encodeCursorJson, parseLimit, parseTime, readParams } from "./list-params.ts";
import type { EventQuery, StoredEvent } from "./records.ts";
import type { RunSummary } from "./run-list.ts";

export const DEFAULT_EVENT_PAGE = 50;
export const MAX_EVENT_PAGE = 500;

export interface EventSummary {
  id: string;
  name: string;
  data: unknown;
  /** The sender's timestamp (ms since the epoch), or the time of receipt. */
  ts: number;
  receivedAt: string;
  /** The runs it started, and the batch run it joined, oldest first. */
  runs: RunSummary[];
}

/** One page of events, newest first, and the cursor of the next page (null: this is the last). */
export interface EventPage {
  events: EventSummary[];
  next: string | null;
}

export function eventSummary(event: StoredEvent, runs: RunSummary[]): EventSummary {
  return { id: event.id, name: event.name, data: event.data, ts: event.ts, receivedAt: event.receivedAt.toISOString(), runs };
}

export function encodeEventCursor(seq: string): string {
  return encodeCursorJson(["e", seq]);
}

function decodeEventCursor(cursor: string): string {
  const decoded = decodeCursorJson(cursor);
  if (Array.isArray(decoded) && decoded.length === 2 && decoded[0] === "e" && typeof decoded[1] === "string" && /^\d{1,18}$/.test(decoded[1])) return decoded[1];
  throw new InputError(`Invalid cursor "${cursor.slice(0, 60)}": pass the "next" of the page before, as it came`);
}

/** The query of `GET /api/events?name=&since=&until=&cursor=&limit=`; an `InputError` names what is wrong. */
export function parseEventQuery(given: Record<string, string[]>): EventQuery {
  const params = readParams(given, ["name", "since", "until", "cursor", "limit"], "an event list");
  const query: EventQuery = { limit: DEFAULT_EVENT_PAGE };
  if (params.name !== undefined) query.name = params.name;
  if (params.since !== undefined) query.since = parseTime("since", params.since);
  if (params.until !== undefined) query.until = parseTime("until", params.until);
  checkRange(query.since, query.until, params);
  if (params.cursor !== undefined) query.after = decodeEventCursor(params.cursor);
  if (params.limit !== undefined) query.limit = parseLimit(params.limit, MAX_EVENT_PAGE);
  return query;
}
