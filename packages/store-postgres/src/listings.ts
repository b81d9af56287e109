/**
 * The operator's lists: runs and events a page at a time, filtered, newest first. One row more
 * than asked for is read, to know whether a page follows without counting.
 */
import type { EventQuery, RunListPosition, RunQuery, RunRecord, StoredEvent } from "@stepwise/engine";
import { toEvent, toRun } from "./rows.ts";
import { idsParam, type SqlClient } from "./sql.ts";

/** A page of runs, newest first (by start, then ID), with where each stands and where the next page starts. */
export async function listRunPage(client: SqlClient, query: RunQuery): Promise<{ runs: RunRecord[]; positions: RunListPosition[]; next: RunListPosition | null }> {
  const params: unknown[] = [];
  const where: string[] = [];
  const param = (value: unknown): `$${number}` => `$${params.push(value)}`;
  if (query.functionId !== undefined) where.push(`function_id = ${param(query.functionId)}`);
  if (query.statuses?.length) where.push(`status = ANY (${idsParam(param(JSON.stringify(query.statuses)), "text")})`);
  if (query.since) where.push(`started_at >= ${param(query.since.toISOString())}::timestamptz`);
  if (query.until) where.push(`started_at < ${param(query.until.toISOString())}::timestamptz`);
  if (query.after) where.push(`(started_at, id) < (${param(query.after.startedAt)}::timestamptz, ${param(query.after.id)})`);
  // One more than asked for: whether a page follows, without a count.
  const rows = await client.query(
    `SELECT *, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS started_key FROM runs
     ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
     ORDER BY started_at DESC, id DESC LIMIT ${param(query.limit + 1)}`,
    params,
  );
  const page = rows.slice(0, query.limit);
  const positions = page.map((row) => ({ startedAt: String(row.started_key), id: String(row.id) }));
  const next = rows.length > query.limit ? (positions.at(-1) ?? null) : null;
  return { runs: page.map(toRun), positions, next };
}

/** A page of events, newest first (by arrival), and where the next page starts. */
export async function listEventPage(client: SqlClient, query: EventQuery): Promise<{ events: StoredEvent[]; next: string | null }> {
  const params: unknown[] = [];
  const where: string[] = [];
  const param = (value: unknown): `$${number}` => `$${params.push(value)}`;
  if (query.name !== undefined) where.push(`name = ${param(query.name)}`);
  if (query.since) where.push(`received_at >= ${param(query.since.toISOString())}::timestamptz`);
  if (query.until) where.push(`received_at < ${param(query.until.toISOString())}::timestamptz`);
  if (query.after !== undefined) where.push(`seq < ${param(query.after)}::bigint`);
  // One more than asked for: whether a page follows, without a count.
  const rows = await client.query(
    `SELECT id, name, data, ts, received_at, seq::text AS seq FROM events
     ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
     ORDER BY seq DESC LIMIT ${param(query.limit + 1)}`,
    params,
  );
  const page = rows.slice(0, query.limit).map((row) => ({ ...toEvent(row), receivedAt: new Date(row.received_at as string), seq: String(row.seq) }));
  return { events: page, next: rows.length > query.limit ? (page.at(-1)?.seq ?? null) : null };
}
