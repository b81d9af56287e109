/**
 * Finding runs for a list or a bulk action: the store filters by function, status and time;
 * `q`, a CEL condition over the run and its event (`event.data.plan == "pro" && run.status ==
 * "failed"`), is checked here, over the store's pages in order, since no store can evaluate it.
 * A page ends when it holds `limit` matches or once `SCAN_BUDGET` runs (or 250 ms) were looked at, so a
 * rare match never makes a request read the whole history: `next` then continues the search
 * and a page may hold fewer runs than asked for, even none, before the list ends.
 */
import { evaluateCondition } from "./expressions.ts";
import type { EventRecord, RunListPosition, RunQuery, RunRecord } from "./records.ts";
import { runSummary } from "./run-list.ts";
import type { Store } from "./store.ts";

/** Most runs one page with `q` looks at, and the longest it searches. */
export const SCAN_BUDGET = 2_000;
const SCAN_MS = 250;
/** Runs read from the store at a time while searching. */
const SCAN_PAGE = 200;

export async function findRuns(store: Store, query: RunQuery): Promise<{ runs: RunRecord[]; next: RunListPosition | null; events?: Map<string, EventRecord> }> {
  const { q } = query;
  if (q === undefined) return store.listRuns(query);
  const found: RunRecord[] = [];
  // The events `q` was judged with, for a bulk action to judge the runs again under their locks.
  const seen = new Map<string, EventRecord>();
  let after = query.after;
  const deadline = Date.now() + SCAN_MS;
  for (let scanned = 0; ; ) {
    const page = await store.listRuns({ ...query, after, limit: SCAN_PAGE });
    const events = new Map((await store.getEvents([...new Set(page.runs.map((run) => run.eventId))])).map((event) => [event.id, event]));
    for (const [index, run] of page.runs.entries()) {
      const event = events.get(run.eventId);
      if (!matchesQuery(q, run, event)) continue;
      found.push(run);
      if (event) seen.set(event.id, event);
      // Full: the next page starts after this run (unless it was the list's last).
      if (found.length === query.limit) return { runs: found, next: index < page.runs.length - 1 || page.next ? page.positions[index]! : null, events: seen };
    }
    scanned += page.runs.length;
    if (!page.next || scanned >= SCAN_BUDGET || Date.now() > deadline) return { runs: found, next: page.next, events: seen };
    after = page.next;
  }
}

/** `q` over the run (as the list shows it) and its event (a batch's first). */
export function matchesQuery(q: string, run: RunRecord, event: EventRecord | undefined): boolean {
  return evaluateCondition(q, { run: runSummary(run), event: event ? { id: event.id, name: event.name, data: event.data, ts: event.ts } : {} });
}
