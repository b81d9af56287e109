/**
 * What the lists of the API (`GET /api/runs`, `GET /api/events`, the bulk actions) read from a
 * URL's parameters, each with an error that names the parameter and says what would do.
 */
import { textProblem } from "@stepwise/protocol";
import { InputError } from "./errors.ts";

/**
 * Each parameter's one value, refusing parameters `known` does not list (a typo would otherwise
 * widen a list, or a bulk action, to everything), repeated ones and text the store cannot hold.
 */
export function readParams<K extends string>(given: Record<string, string[]>, known: readonly K[], what: string): Partial<Record<K, string>> {
  const unknown = Object.keys(given).filter((name) => !known.includes(name as K));
  if (unknown.length > 0) throw new InputError(`Unknown parameter ${unknown.map((name) => `"${name.slice(0, 40)}"`).join(", ")}: ${what} takes ${known.join(", ")}`);
  const params: Partial<Record<K, string>> = {};
  for (const [name, values] of Object.entries(given)) {
    if (values.length > 1) throw new InputError(`Parameter "${name}" given ${values.length} times: give it once (several statuses go in one, separated by commas)`);
    const problem = textProblem(values[0]!);
    if (problem) throw new InputError(`Parameter "${name}" ${problem}`);
    params[name as K] = values[0];
  }
  return params;
}

/** Years the store's times hold (Postgres has no year 0, and JavaScript's dates go past 9999). */
// (Not Date.UTC(1, 0, 1): it reads years 0-99 as 1900-1999.)
const EARLIEST = Date.parse("0001-01-01T00:00:00Z");
const LATEST = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
export const inRange = (date: Date) => !Number.isNaN(date.getTime()) && date.getTime() >= EARLIEST && date.getTime() <= LATEST;

/** A date (midnight UTC) or a time with its zone: a time without one would be read in the executor's own. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/;

export function parseTime(name: string, value: string): Date {
  const date = new Date(value);
  if (!ISO_TIME.test(value) || !inRange(date)) {
    throw new InputError(`Invalid ${name} "${value.slice(0, 60)}": give a date or an ISO 8601 time with its zone, e.g. 2026-12-05 or 2026-12-05T09:00:00Z`);
  }
  return date;
}

/** `since` before `until`, when both are given. */
export function checkRange(since: Date | undefined, until: Date | undefined, given: { since?: string; until?: string }): void {
  if (since && until && since >= until) throw new InputError(`Invalid range: since (${given.since}) must be before until (${given.until})`);
}

export function parseLimit(value: string, max: number): number {
  const limit = Number(value);
  if (!Number.isInteger(limit) || limit < 1 || limit > max) throw new InputError(`Invalid limit "${value.slice(0, 20)}": give a whole number from 1 to ${max}`);
  return limit;
}

/** Base64url of a cursor's JSON (btoa, not Buffer: the engine runs on Workers too; cursors are ASCII). */
export function encodeCursorJson(value: unknown): string {
  return btoa(JSON.stringify(value)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The JSON a cursor holds, or undefined when it is not one. */
export function decodeCursorJson(cursor: string): unknown {
  try {
    return JSON.parse(atob(cursor.replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return undefined;
  }
}
