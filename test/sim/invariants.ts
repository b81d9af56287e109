/**
 * The promises, checked after a schedule against what the store holds and what the ledger saw.
 * Each broken promise is one line naming the run and step, so a failure reads as a bug report.
 *
 * 1. Every run ends (or waits, with the job that will wake it).
 * 2. A step's result is committed at most once and never overwritten; nothing of a run changes
 *    after it ended (audit triggers in the store).
 * 3. A step body runs more than once only when a crash, a stall past the lease or a lost answer
 *    happened while it ran (every extra execution is counted by its cause).
 * 4. No invocation is built from a state read after its run's end was acknowledged, and no
 *    step body starts in an invocation after the executor refused one of its checkpoints.
 * 5. `retries` bounds the attempts of every step (its own, `step.run({ id, retries })`, or
 *    its function's) and of every function body.
 * 6. A wait resolves to a matching event, or to null only when none arrived in time; never both.
 *    A wait with a look-back finds the event its run stored before the wait began, and never
 *    one the run received already.
 * 7. onFailure runs exactly once for each failed run, and for no other.
 * 8. No acknowledged event is lost: each start event has its one run.
 * 9. A completed run returned exactly the values the store holds for its steps.
 * 10. The executors idle when nothing is due, and stop within their grace period.
 * 12. A cron tick starts at most one run, and the function's chain of ticks survives every
 *     fault: exactly one tick is queued for it at the end. A run skipped by its rate limit ran
 *     nothing and holds no job.
 * 13. An idempotency key starts exactly one run: every key of the events sent has its run, and
 *     no key has two.
 * 11. No step body after a sleep starts before the sleep's due time (whatever the executors'
 *     clocks say: the store's clock judges due times).
 * 14. No more invocations of a concurrency key are out at once than its limit, across every
 *     executor, unless a crash or stall (a lease that ran out) excuses it.
 * 15. A throttled function starts no faster than its throttle: in any period, at most its limit
 *     plus its burst (and one for the way to the app), unless an executor stalled or crashed then.
 * 16. A debounced event is never lost and never run twice: every event of a key has its one run;
 *     a run skipped by the debounce was never sent to the app and names the run of a later event
 *     of its key that replaced it; the run of a key's last event is not skipped.
 * 17. A batched event is in exactly one batch; a batch holds at most its size, no event joins it
 *     after its run went to the app, and a completed batch run's handler got exactly its events,
 *     in order of arrival.
 * 18. Every execution of a step's code is told the step's one idempotency key and an attempt
 *     within the step's retries.
 */
import { DERIVED_ID_PREFIX, derivedEventId } from "@stepwise/protocol";
import { expectedJobs, type RunState, type StepRecord } from "@stepwise/engine";
import type { SqlClient } from "@stepwise/store-postgres";
import { createHash } from "node:crypto";
import { SIM_APP_ID, SIM_BATCH, SIM_THROTTLE } from "./app.ts";
import { LEASE_MS } from "./schedule.ts";
import type { BodyRun } from "./ledger.ts";
import { STOP_GRACE_MS, type Played } from "./world.ts";

export interface Checked {
  violations: string[];
  runs: number;
  steps: number;
  invocations: number;
  /** Step bodies that ran more than their committed once, by cause. */
  extraBodies: Map<string, number>;
}

type Row = Record<string, unknown>;
/** The key the SDK documents for a step (`StepRunContext.idempotencyKey`), worked out independently. */
const stepIdempotencyKey = (runId: string, stepId: string) => `stepwise-${createHash("sha256").update(`${runId}\u0000${stepId}`).digest("hex")}`;
const json = (text: unknown): unknown => (text == null ? undefined : JSON.parse(String(text)));
const list = (values: string[]) => JSON.stringify(values);
const IN = (param: string) => `(SELECT jsonb_array_elements_text(${param}::jsonb))`;
const RETRIES: Record<string, number> = { "sim-r0": 0, "sim-r2": 2, "sim-child": 2, "sim-responder": 2, "sim-idem": 2, "sim-debounce": 2, "sim-batch": 2, "sim-tick": 2, "sim-r0-failure": 0, "sim-r2-failure": 2 };
/** The idle process may use at most this many times the reference poller's CPU (see the idle check). */
const IDLE_CPU_RATIO = 20;
const pct = (share: number) => `${(share * 100).toFixed(0)}%`;

export async function check(sql: SqlClient, played: Played): Promise<Checked> {
  const violations: string[] = [];
  const fail = (line: string) => violations.push(line);
  const { ledger } = played;

  // The schedule's runs: those its start events started, and every run they led to.
  const runs = new Map<string, Row>();
  let frontier = (await sql.query("SELECT * FROM runs WHERE event_id IN " + IN("$1"), [list(played.acked.map((a) => a.eventId))]));
  while (frontier.length > 0) {
    for (const run of frontier) runs.set(String(run.id), run);
    const ids = list(frontier.map((run) => String(run.id)));
    // Events a run led to have IDs derived from it: stepwise:<run>:<step>:<n>, stepwise:<run>:failed.
    const derivedFrom = `split_part(event_id, ':', 2) IN ${IN("$1")} AND event_id LIKE '${DERIVED_ID_PREFIX}%'`;
    frontier = (await sql.query(`SELECT * FROM runs WHERE parent_run_id IN ${IN("$1")} OR (${derivedFrom})`, [ids])).filter(
      (run) => !runs.has(String(run.id)),
    );
  }
  const runIds = list([...runs.keys()]);
  const steps = await sql.query("SELECT * FROM steps WHERE run_id IN " + IN("$1") + " ORDER BY run_id, position", [runIds]);
  const stepsByRun = new Map<string, Row[]>();
  for (const step of steps) stepsByRun.set(String(step.run_id), [...(stepsByRun.get(String(step.run_id)) ?? []), step]);
  const localId = (run: Row) => String(run.function_id).slice(SIM_APP_ID.length + 1);
  /**
   * A step's retries: its own when its bodies ran with a policy (`step.run({ id, retries })`) or,
   * when none ran (every attempt failed before reaching the app), as its plan reported it; else
   * its function's.
   */
  const retriesOf = (run: Row, bodies: readonly BodyRun[], step?: Row) =>
    bodies.find((b) => b.retries !== undefined)?.retries ??
    (json(step?.retry_policy) as { retries?: number } | undefined)?.retries ??
    RETRIES[localId(run)] ??
    0;

  // 1. Every run ends.
  if (!played.quiesced) {
    const jobs = await sql.query("SELECT * FROM jobs WHERE run_id IN " + IN("$1"), [runIds]);
    for (const run of runs.values()) {
      if (["completed", "failed", "cancelled", "skipped"].includes(String(run.status))) continue;
      const state = { run: { status: run.status }, steps: (stepsByRun.get(String(run.id)) ?? []).map(stepRecord) } as unknown as RunState;
      const mine = jobs.filter((job) => job.run_id === run.id);
      const missing = expectedJobs(state).filter((want) => !mine.some((job) => job.kind === want.kind && (job.step_id ?? undefined) === want.stepId));
      fail(`run ${run.id} (${localId(run)}) is still ${run.status} after the deadline; ` + (missing.length > 0 ? `it has no ${missing.map((j) => j.kind + (j.stepId ? ` of "${j.stepId}"` : "")).join(", ")} job: stuck` : `its jobs: ${mine.map((j) => `${j.kind} at ${j.run_at}`).join(", ")}`));
    }
  }

  // A run the sweep had to repair was left without a job: a bug the sweep only papers over.
  for (const line of played.executorLines) if (line.includes("had no job to move it on")) fail(`stranded: ${line.replace(/^WARN /, "")}`);

  // 2. What the store's audit triggers saw.
  for (const row of await sql.query("SELECT run_id, step_id, count(*)::int AS n FROM sim_step_commits WHERE run_id IN " + IN("$1") + " GROUP BY 1, 2 HAVING count(*) > 1", [runIds])) {
    fail(`step "${row.step_id}" of run ${row.run_id} was committed ${row.n} times`);
  }
  for (const row of await sql.query("SELECT * FROM sim_violations WHERE run_id IN " + IN("$1"), [runIds])) {
    fail(`${row.kind}: run ${row.run_id}${row.step_id ? ` step "${row.step_id}"` : ""} (${row.detail})`);
  }

  // 3 and 4. Step bodies against what was committed.
  const extraBodies = new Map<string, number>();
  const bodiesByStep = new Map<string, BodyRun[]>();
  for (const body of ledger.bodies) {
    if (!runs.has(body.runId)) continue;
    const key = `${body.runId}\n${body.stepId}`;
    bodiesByStep.set(key, [...(bodiesByStep.get(key) ?? []), body]);
  }
  for (const [key, bodies] of bodiesByStep) {
    const [runId, stepId] = key.split("\n") as [string, string];
    const run = runs.get(runId)!;
    const step = (stepsByRun.get(runId) ?? []).find((s) => s.id === stepId);
    const output = step?.status === "completed" ? (json(step.output) as { token?: string } | undefined) : undefined;
    const committed = output?.token;
    let unexcused = 0;
    const returned = bodies.filter((b) => b.token !== undefined);
    for (const body of returned) {
      if (body.token === committed) continue;
      // One uncommitted execution is no repeat when nothing was committed (the run ended first).
      if (committed === undefined && body === returned[0]) continue;
      const excuse = ledger.excuse(body);
      if (excuse) extraBodies.set(excuse, (extraBodies.get(excuse) ?? 0) + 1);
      else {
        unexcused++;
        const story = bodies.map((b) => {
          const inv = ledger.invocationById(b.invocation);
          return `${b.token ?? "threw"}@inv${b.invocation}(${inv?.executor} ${inv?.targetStep ?? "-"} ${inv?.fault}/${inv?.delivery} +${inv ? inv.sentAt - played.startedAt : "?"}ms)`;
        });
        const rel = (at: number | undefined) => (at === undefined ? "-" : `+${at - played.startedAt}`);
        const events = [
          ...[...ledger.crashes].map(([e, at]) => `crash ${e} ${rel(at)}`),
          ...[...ledger.stops].map(([e, at]) => `stop ${e} ${rel(at)}`),
          ...[...ledger.stalls].flatMap(([e, list]) => list.map(([from, to]) => `stall ${e} ${rel(from)}..${rel(to)}`)),
          ...ledger.leaseLosses.filter((l) => l.runId === runId).map((l) => `lease lost ${l.executor} ${rel(l.at)}`),
        ];
        const runStory = ledger.invocations.filter((inv) => inv.runId === runId).map((inv) => `inv${inv.id}:${inv.executor}:${inv.targetStep ?? "-"}:${inv.fault}:+${inv.sentAt - played.startedAt}`);
        fail(
          `step "${stepId}" of run ${runId} (${localId(run)}): a body ran again with no crash, stall or lost answer to excuse it ` +
            `(committed ${committed ?? "nothing"}, step ${step?.status} attempts ${step?.attempts}; bodies ${story.join(", ")}; invocations ${runStory.join(" ")}; ${events.join(", ")})`,
        );
      }
    }
    const retries = retriesOf(run, bodies);
    const attempts = bodies.filter((b) => !ledger.excuse(b)).length;
    if (attempts - unexcused > retries + 1) fail(`step "${stepId}" of run ${runId}: ${attempts} attempts, but retries is ${retries}`);
    const ended = ledger.endsAcked.get(runId);
    // 11. Steps after a sleep (later in the run: every program awaits its sleeps) start after its due time.
    const sleepsBefore = step ? (stepsByRun.get(runId) ?? []).filter((s) => s.kind === "sleep" && s.wake_at && Number(s.position) < Number(step.position)) : [];
    for (const sleep of sleepsBefore) {
      const dueAt = new Date(String(sleep.wake_at)).getTime();
      const early = bodies.find((body) => body.at < dueAt);
      if (early) fail(`step "${stepId}" of run ${runId} (${localId(run)}) started ${dueAt - early.at} ms before the end of sleep "${sleep.id}", which comes before it`);
    }
    // 18. Every execution of a step is told the step's one idempotency key, and an attempt
    //     within its retries (an invocation that failed before the app ran the step counts too).
    const idempotencyKey = stepIdempotencyKey(runId, stepId);
    for (const [n, body] of bodies.entries()) {
      if (body.context.idempotencyKey !== idempotencyKey) fail(`step "${stepId}" of run ${runId}: execution ${n + 1} got the idempotency key ${body.context.idempotencyKey}, not ${idempotencyKey}`);
      if (body.context.attempt > retries) fail(`step "${stepId}" of run ${runId}: execution ${n + 1} was told attempt ${body.context.attempt} (retries ${retries})`);
    }
    for (const body of bodies) {
      const refused = ledger.refusedCheckpoints.find((r) => r.invocation === body.invocation && r.at < body.at);
      if (refused) fail(`step "${stepId}" of run ${runId} ran in invocation ${body.invocation} ${body.at - refused.at} ms after the executor refused its checkpoint of "${refused.stepId}"`);
      const invocation = ledger.invocationById(body.invocation);
      if (ended !== undefined && invocation?.readAt !== undefined && invocation.readAt > ended) {
        fail(`step "${stepId}" of run ${runId} ran in invocation ${invocation.id}, built from a state read ${invocation.readAt - ended} ms after the run's end was acknowledged`);
      }
    }
  }

  // 5. Stored attempts within retries.
  for (const run of runs.values()) {
    const retries = RETRIES[localId(run)] ?? 0;
    if (Number(run.attempt) > retries) fail(`run ${run.id} (${localId(run)}): body attempt ${run.attempt}, but retries is ${retries}`);
    for (const step of stepsByRun.get(String(run.id)) ?? []) {
      const bodies = bodiesByStep.get(`${run.id}\n${step.id}`) ?? [];
      const stepRetries = retriesOf(run, bodies, step);
      if (Number(step.attempts) > stepRetries + 1) {
        fail(`step "${step.id}" of run ${run.id} (${localId(run)}): ${step.attempts} attempts stored, but retries is ${stepRetries} (policy ${step.retry_policy ?? "none"}, ${bodies.length} bodies ran)`);
      }
    }
  }

  // 6. Waits.
  const signals = await sql.query("SELECT id, name, data, received_at FROM events WHERE name IN ('sim/ping', 'sim/answer') AND received_at >= $1", [new Date(played.startedAt - 10_000).toISOString()]);
  for (const run of runs.values()) {
    const plan = played.acked.find((a) => a.eventId === run.event_id);
    if (!plan) continue; // waits are in the runs the simulation started, not in children or responders
    const asks = plan.program.flatMap((item, index) => (item.t === "ask" ? [index] : []));
    const recalls = plan.program.flatMap((item, index) => (item.t === "recall" ? [index] : []));
    for (const step of stepsByRun.get(String(run.id)) ?? []) {
      if (step.kind !== "wait" || step.status !== "completed") continue;
      const got = json(step.output) as { name: string; data: Record<string, unknown> } | null;
      if (String(step.name) === "recall") {
        // The k-th "recall" step looks back for the memo the run stored before its sleep: always there.
        const mid = `${plan.key}:${recalls[Number(String(step.id).split(":")[1] ?? 0)]}`;
        if (got?.name !== "sim/memo" || got.data.mid !== mid) fail(`wait "${step.id}" of run ${run.id} looked back for memo ${mid}, stored before it began, and got ${JSON.stringify(got)?.slice(0, 200)}`);
        continue;
      }
      if (String(step.name) === "recall-again") {
        if (got !== null) fail(`wait "${step.id}" of run ${run.id} looked back again and got ${JSON.stringify(got).slice(0, 200)}, an event the run had received already`);
        continue;
      }
      // The k-th "answer" step (answer, answer:1, …) waits for the answer to the k-th ask of the program.
      const nth = Number(String(step.id).split(":")[1] ?? 0);
      const qid = `${plan.key}:${asks[nth]}`;
      const accepts = (event: { name: string; data: Record<string, unknown> }) =>
        String(step.name) === "answer" ? event.name === "sim/answer" && event.data.qid === qid : event.name === "sim/ping" && event.data.key === plan.key;
      if (got && !accepts(got)) fail(`wait "${step.id}" of run ${run.id} (${plan.key}, expecting ${String(step.name) === "answer" ? qid : plan.key}) resolved to an event that does not match: ${JSON.stringify(got).slice(0, 200)}`);
      if (got === null) {
        const reached = ledger.invocations.find((inv) => inv.runId === run.id && inv.waits.includes(String(step.id)) && inv.delivery === "delivered")?.answeredAt;
        const timeoutAt = new Date(String(step.wake_at)).getTime();
        if (reached === undefined) continue;
        const missed = signals.find((event) => {
          const at = new Date(String(event.received_at)).getTime();
          return accepts({ name: String(event.name), data: json(event.data) as Record<string, unknown> }) && at > reached && at < timeoutAt - 1_000;
        });
        if (missed) fail(`wait "${step.id}" of run ${run.id} timed out, but ${missed.id} arrived ${new Date(String(missed.received_at)).getTime() - reached} ms after the run reached it`);
      }
    }
  }

  // 7. onFailure exactly once per failed run.
  for (const run of runs.values()) {
    const fn = localId(run);
    if (fn !== "sim-r0" && fn !== "sim-r2") continue;
    const handlers = [...runs.values()].filter((r) => r.event_id === derivedEventId(String(run.id), "failed"));
    if (run.status === "failed" && handlers.length !== 1) fail(`run ${run.id} failed; its onFailure ran ${handlers.length} times`);
    if (run.status !== "failed" && handlers.length > 0) fail(`run ${run.id} ended ${run.status}, yet onFailure ran`);
  }

  // 8. Every acknowledged event has its run.
  for (const { eventId, key } of played.acked) {
    const started = [...runs.values()].filter((run) => run.event_id === eventId);
    if (started.length !== 1) fail(`event ${eventId} (${key}) was acknowledged and started ${started.length} runs`);
  }

  // 9. What a completed run returned is what the store holds.
  for (const run of runs.values()) {
    if (run.status !== "completed" || !["sim-r0", "sim-r2", "sim-child"].includes(localId(run))) continue;
    const results = (json(run.output) as { results: unknown[] }).results;
    const stored = stepsByRun.get(String(run.id)) ?? [];
    if (results.length !== stored.length) {
      fail(`run ${run.id} returned ${results.length} step results, the store holds ${stored.length} steps`);
      continue;
    }
    stored.forEach((step, position) => {
      const seen = results[position];
      const expected = step.status === "failed" ? { caught: (json(step.error) as { name: string }).name } : (json(step.output) ?? null);
      if (JSON.stringify(seen) !== JSON.stringify(expected)) {
        fail(`run ${run.id} step "${step.id}": the function saw ${JSON.stringify(seen)?.slice(0, 120)}, the store holds ${JSON.stringify(expected)?.slice(0, 120)}`);
      }
    });
  }

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

  // 14. Concurrency: the executors' calls of each key's runs, from send to end, never more at once than its limit.
  const spans = new Map<string, { limit: number; calls: Array<{ from: number; to: number; id: number }> }>();
  for (const invocation of ledger.invocations) {
    const slots = runs.get(invocation.runId)?.concurrency as Array<{ key: string; limit: number }> | null | undefined;
    for (const { key, limit } of slots ?? []) {
      const entry = spans.get(key) ?? { limit, calls: [] };
      entry.calls.push({ from: invocation.sentAt, to: invocation.endedAt ?? invocation.sentAt, id: invocation.id });
      spans.set(key, entry);
    }
  }
  for (const [key, { limit, calls }] of spans) {
    const over = mostAtOnce(calls);
    if (over.length > limit && !ledger.disturbed(Math.min(...over.map((c) => c.from)), Math.max(...over.map((c) => c.to)))) {
      const told = over.map((c) => {
        const inv = ledger.invocationById(c.id)!;
        return `inv${c.id} ${inv.executor} run ${inv.runId} ${inv.targetStep ?? "-"} ${inv.fault}/${inv.delivery} +${c.from - played.startedAt}..+${c.to - played.startedAt}ms`;
      });
      fail(`concurrency key ${key}: ${over.length} invocations out at once, over its limit of ${limit} (${told.join("; ")})`);
    }
  }

  // 15. Throttle: when each run of sim-responder was first sent to the app.
  const firstSent = new Map<string, number>();
  for (const invocation of ledger.invocations) {
    const run = runs.get(invocation.runId);
    if (!run || localId(run) !== "sim-responder" || firstSent.has(invocation.runId)) continue;
    firstSent.set(invocation.runId, invocation.sentAt);
  }
  const startTimes = [...firstSent.values()].sort((a, b) => a - b);
  const allowed = SIM_THROTTLE.limit + SIM_THROTTLE.burst + 1;
  for (const [i, at] of startTimes.entries()) {
    const within = startTimes.slice(i).filter((t) => t < at + SIM_THROTTLE.period);
    if (within.length > allowed && !ledger.disturbed(at - LEASE_MS, at + SIM_THROTTLE.period)) {
      fail(`sim-responder started ${within.length} runs within ${SIM_THROTTLE.period} ms from +${at - played.startedAt}ms, over its throttle (${SIM_THROTTLE.limit} per period, bursts of ${SIM_THROTTLE.burst})`);
      break;
    }
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

  // 10. Idle and stopping.
  // A poll every 200 ms is about 8 claims in 1.5 s. A few more are Redis entries of jobs already
  // gone from the record (a forget cut short by a crash), each dropped at its first claim; a
  // loop would make hundreds. (This check found the tx path not telling Redis of its own job.)
  const perExecutor = played.idleClaims / 2;
  if (perExecutor > 16) {
    const [jobs] = await sql.query<{ n: number | string }>("SELECT count(*) AS n FROM jobs");
    fail(`the executors claimed ${played.idleClaims} times in 1.5 s with nothing due (a poll every 200 ms is 8); ${played.idleFruitfulClaims} claims found a job; the record holds ${jobs?.n} jobs`);
  }
  // Two executors, the app, the test runner and (by topology) PGlite or the Redis bridge share
  // this process: 2-11 times the reference poller over 1.5 s on a quiet machine; a spinning loop
  // is fifty times and more.
  if (played.idleCpu > IDLE_CPU_RATIO * played.idleReferenceCpu) {
    fail(`the process used ${pct(played.idleCpu)} of a core with nothing due, ${(played.idleCpu / played.idleReferenceCpu).toFixed(1)} times the reference poller's ${pct(played.idleReferenceCpu)} (at most ${IDLE_CPU_RATIO})`);
  }
  for (const ms of played.stops) if (ms > STOP_GRACE_MS + 1_500) fail(`a graceful stop took ${ms} ms (grace ${STOP_GRACE_MS} ms)`);

  const invocations = ledger.invocations.filter((inv) => runs.has(inv.runId)).length;
  return { violations, runs: runs.size, steps: steps.length, invocations, extraBodies };
}

/** The largest set of calls out at the same moment (a call ending as another starts does not overlap it). */
function mostAtOnce<T extends { from: number; to: number }>(calls: readonly T[]): T[] {
  let most: T[] = [];
  for (const call of calls) {
    const together = calls.filter((other) => other.from <= call.from && other.to > call.from);
    if (together.length > most.length) most = together;
  }
  return most;
}

function stepRecord(row: Row): StepRecord {
  return { id: String(row.id), status: row.status, wakeAt: row.wake_at ? new Date(String(row.wake_at)) : undefined } as StepRecord;
}
