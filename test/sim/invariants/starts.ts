/**
 * How events become runs under a function's configuration: one run per cron tick and per
 * idempotency key, a debounce that keeps the last event of a burst, and batches that hold each
 * event once, in order.
 */
import { SIM_APP_ID, SIM_BATCH } from "../app.ts";
import { LEASE_MS } from "../schedule.ts";
import { IN, json, list, localId, type Scene } from "./scene.ts";

export async function checkStarts(scene: Scene): Promise<void> {
  const { sql, played, ledger, runs, fail } = scene;
  // 12. Cron.
  const tickFunction = `${SIM_APP_ID}-sim-tick`;
  for (const row of await sql.query("SELECT event_id, count(*)::int AS n FROM runs WHERE function_id = $1 GROUP BY 1 HAVING count(*) > 1", [tickFunction])) {
    fail(`cron tick ${row.event_id} started ${row.n} runs`);
  }
  for (const row of await sql.query(
    `SELECT r.id, (SELECT count(*) FROM steps s WHERE s.run_id = r.id)::int AS steps, (SELECT count(*) FROM jobs j WHERE j.run_id = r.id)::int AS jobs
     FROM runs r WHERE r.function_id = $1 AND r.status = 'skipped'`,
    [tickFunction],
  )) {
    if (Number(row.steps) + Number(row.jobs) > 0) fail(`skipped run ${row.id} has ${row.steps} steps and ${row.jobs} jobs`);
  }
  const [queuedTicks] = await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM jobs WHERE kind = 'cron' AND run_id = $1", [`cron:${tickFunction}`]);
  if (Number(queuedTicks?.n) !== 1) fail(`the cron trigger of ${tickFunction} has ${queuedTicks?.n} ticks queued at the end, not 1: its ticks ${Number(queuedTicks?.n) === 0 ? "stopped" : "doubled"}`);

  // 13. Idempotency: the noise events of this schedule's runs (keyed by the run's plan key, or
  // `<key>/child` for a child's), all of them whatever their time, against the runs of sim-idem.
  const idemFunction = `${SIM_APP_ID}-sim-idem`;
  const noise = await sql.query<{ key: string; events: number; runs: number }>(
    `SELECT e.data::jsonb->>'key' AS key, count(DISTINCT e.id)::int AS events, count(r.id)::int AS runs
     FROM events e LEFT JOIN runs r ON r.event_id = e.id AND r.function_id = $2
     WHERE e.name = 'sim/noise' AND split_part(e.data::jsonb->>'key', '/', 1) IN ${IN("$1")}
     GROUP BY 1`,
    [list(played.acked.map((a) => a.key)), idemFunction],
  );
  for (const row of noise) {
    if (row.runs !== 1) fail(`idempotency key ${row.key}: ${row.events} event(s) started ${row.runs} runs of ${idemFunction}, not 1`);
  }

  // 16. Debounce: the runs of sim-debounce by key, in the order their events arrived.
  const debounceRuns = [...runs.values()].filter((run) => localId(run) === "sim-debounce");
  const arrivals = await sql.query<{ id: string; key: string; seq: string; received_ms: number | string; runs: number }>(
    `SELECT e.id, e.data::jsonb->>'key' AS key, e.seq::text AS seq, extract(epoch FROM e.received_at) * 1000 AS received_ms, (SELECT count(*)::int FROM runs r WHERE r.event_id = e.id AND r.function_id = $2) AS runs
     FROM events e WHERE e.id IN ${IN("$1")} ORDER BY e.seq`,
    [list(debounceRuns.map((run) => String(run.event_id))), `${SIM_APP_ID}-sim-debounce`],
  );
  const arrival = new Map(arrivals.map((event, i) => [event.id, { ...event, order: i }]));
  const runOfEvent = new Map(debounceRuns.map((run) => [String(run.event_id), run]));
  const invoked = new Set(ledger.invocations.map((invocation) => invocation.runId));
  const lastOfKey = new Map<string, string>();
  for (const event of arrivals) {
    lastOfKey.set(event.key, event.id);
    if (event.runs !== 1) fail(`debounced event ${event.id} (key ${event.key}) has ${event.runs} runs of sim-debounce, not 1`);
  }
  for (const run of debounceRuns) {
    const mine = arrival.get(String(run.event_id))!;
    if (run.status !== "skipped") continue;
    if (invoked.has(String(run.id))) fail(`debounced run ${run.id} was skipped after it was sent to the app`);
    const by = /^debounce: replaced by run (\S+) for the later event (\S+) /.exec((json(run.error) as { message?: string } | undefined)?.message ?? "");
    const later = by ? arrival.get(by[2]!) : undefined;
    if (!by || !later || later.key !== mine.key || later.order <= mine.order || String(runOfEvent.get(later.id)?.id) !== by[1]) {
      fail(`debounced run ${run.id} (key ${mine.key}) was skipped without naming the run of a later event of its key: ${String(run.error)}`);
    }
  }
  for (const [key, eventId] of lastOfKey) {
    if (runOfEvent.get(eventId)?.status === "skipped") fail(`the last event of debounce key ${key} (${eventId}) has its run skipped: the burst was lost`);
  }
  // One run per burst: a run that went to the app while a later event of its key had already
  // arrived (with time for a claim to reach the app) should have been replaced by it.
  const firstSentAt = new Map<string, number>();
  for (const invocation of ledger.invocations) if (!firstSentAt.has(invocation.runId)) firstSentAt.set(invocation.runId, invocation.sentAt);
  for (const run of debounceRuns) {
    const mine = arrival.get(String(run.event_id))!;
    const sentAt = firstSentAt.get(String(run.id));
    if (run.status === "skipped" || sentAt === undefined) continue;
    const before = [...arrival.values()].find((e) => e.key === mine.key && e.order > mine.order && Number(e.received_ms) < sentAt - 250);
    if (before && !ledger.disturbed(Number(before.received_ms) - LEASE_MS, sentAt)) {
      fail(`debounced run ${run.id} (key ${mine.key}) was sent to the app ${Math.round(sentAt - Number(before.received_ms))} ms after the later event ${before.id} of its key arrived: two runs for one burst`);
    }
  }

  // 17. Batches: the noise of this schedule's runs against the runs of sim-batch and their events.
  const batchFunction = `${SIM_APP_ID}-sim-batch`;
  const noiseEvents = await sql.query<{ id: string; received_ms: number | string }>(
    `SELECT id, extract(epoch FROM received_at) * 1000 AS received_ms FROM events
     WHERE name = 'sim/noise' AND split_part(data::jsonb->>'key', '/', 1) IN ${IN("$1")}`,
    [list(played.acked.map((a) => a.key))],
  );
  const batchRows = await sql.query<{ run_id: string; event_id: string; position: number; status: string; output: string | null }>(
    `SELECT r.id AS run_id, coalesce(b.event_id, r.event_id) AS event_id, coalesce(b.position, 0) AS position, r.status, r.output
     FROM runs r LEFT JOIN run_events b ON b.run_id = r.id
     WHERE r.function_id = $2 AND (r.event_id IN ${IN("$1")} OR b.event_id IN ${IN("$1")})
     ORDER BY r.id, position`,
    [list(noiseEvents.map((event) => event.id)), batchFunction],
  );
  const batchOf = new Map<string, string[]>();
  const inBatches = new Map<string, string[]>();
  const batchRuns = new Map<string, { status: string; output: string | null }>();
  for (const row of batchRows) {
    batchOf.set(row.event_id, [...(batchOf.get(row.event_id) ?? []), row.run_id]);
    inBatches.set(row.run_id, [...(inBatches.get(row.run_id) ?? []), row.event_id]);
    batchRuns.set(row.run_id, row);
  }
  const receivedAt = new Map(noiseEvents.map((event) => [event.id, Number(event.received_ms)]));
  for (const event of noiseEvents) {
    const batches = [...new Set(batchOf.get(event.id) ?? [])];
    if (batches.length !== 1) fail(`batched event ${event.id} is in ${batches.length} batches of sim-batch (${batches.join(", ")}), not 1`);
  }
  for (const [runId, eventIds] of inBatches) {
    if (eventIds.length > SIM_BATCH.maxSize) fail(`batch run ${runId} holds ${eventIds.length} events, over its size of ${SIM_BATCH.maxSize}`);
    const sentAt = firstSentAt.get(runId);
    const late = eventIds.find((id) => sentAt !== undefined && (receivedAt.get(id) ?? 0) > sentAt + 50);
    if (late) fail(`event ${late} joined batch run ${runId} ${Math.round(receivedAt.get(late)! - sentAt!)} ms after the run went to the app`);
    const run = batchRuns.get(runId)!;
    if (run.status === "completed" && JSON.stringify(json(run.output)) !== JSON.stringify(eventIds)) {
      fail(`batch run ${runId} completed with the events ${JSON.stringify(json(run.output))}, not its batch's ${JSON.stringify(eventIds)}`);
    }
  }
}
