/**
 * What the API reads about runs and events: one run with its steps, pages of runs and events
 * (`run-list.ts`, `event-list.ts`, `run-finder.ts` say how they are filtered and paged), an
 * event with the runs it started. Reads only: nothing here takes a lock or writes.
 */
import { encodeEventCursor, eventSummary, parseEventQuery, type EventPage, type EventSummary } from "./event-list.ts";
import type { RunRecord } from "./records.ts";
import { findRuns } from "./run-finder.ts";
import { encodeCursor, parseRunQuery, runSummary, type RunPage, type RunSummary } from "./run-list.ts";
import type { Store } from "./store.ts";
import { runView, type RunView } from "./views.ts";

export async function readRun(store: Store, runId: string): Promise<RunView | null> {
  const run = await store.getRun(runId);
  return run && view(store, run);
}

/** The runs of an event, each with its steps. */
export async function readRunsOfEvent(store: Store, eventId: string): Promise<RunView[]> {
  return Promise.all((await store.listRunsByEvent(eventId)).map((run) => view(store, run)));
}

async function view(store: Store, run: RunRecord): Promise<RunView> {
  const [steps, batch] = await Promise.all([store.listSteps(run.id), store.listBatchEventIds(run.id)]);
  return runView(run, steps, batch);
}

/** A page of runs for `GET /api/runs`'s parameters; an `InputError` names a wrong one. */
export async function readRunPage(store: Store, params: Record<string, string[]>): Promise<RunPage> {
  const { runs, next } = await findRuns(store, parseRunQuery(params));
  return { runs: runs.map(runSummary), next: next && encodeCursor(next) };
}

/** One event with the runs it started; null when the store has no such event (or pruned it). */
export async function readEvent(store: Store, eventId: string): Promise<Omit<EventSummary, "receivedAt"> | null> {
  const [event, runs] = await Promise.all([store.getEvent(eventId), store.listRunsByEvent(eventId)]);
  return event && { id: event.id, name: event.name, data: event.data, ts: event.ts, runs: runs.map(runSummary) };
}

/** A page of events, newest first, each with its runs, for `GET /api/events`'s parameters. */
export async function readEventPage(store: Store, params: Record<string, string[]>): Promise<EventPage> {
  const { events, next } = await store.listEvents(parseEventQuery(params));
  const runsOf = new Map<string, RunSummary[]>();
  for (const { eventId, run } of await store.listRunsByEvents(events.map((event) => event.id))) {
    runsOf.set(eventId, [...(runsOf.get(eventId) ?? []), runSummary(run)]);
  }
  return { events: events.map((event) => eventSummary(event, runsOf.get(event.id) ?? [])), next: next && encodeEventCursor(next) };
}
