/**
 * Waits resolve to a matching event, or to null only when none arrived in time; a look-back finds
 * what its run stored before the wait began and never what the run received already. A signal
 * resumes the one run waiting for it, is stored only then, and is refused only when no run
 * waited for it all along.
 */
import { SIGNAL_EVENT, signalEventId } from "@stepwise/protocol";
import { signalName } from "../program.ts";
import { json, type Row, type Scene } from "./scene.ts";

export async function checkWaits(scene: Scene): Promise<void> {
  const { sql, played, ledger, runs, stepsByRun, fail } = scene;
  // 6. Waits.
  const signals = await sql.query("SELECT id, name, data, received_at FROM events WHERE name IN ('sim/ping', 'sim/answer') AND received_at >= $1", [new Date(played.startedAt - 10_000).toISOString()]);
  for (const run of runs.values()) {
    const plan = played.acked.find((a) => a.eventId === run.event_id);
    if (!plan) continue; // waits are in the runs the simulation started, not in children or responders
    const asks = plan.program.flatMap((item, index) => (item.t === "ask" ? [index] : []));
    const recalls = plan.program.flatMap((item, index) => (item.t === "recall" ? [index] : []));
    const signalItems = plan.program.flatMap((item, index) => (item.t === "signal" ? [index] : []));
    for (const step of stepsByRun.get(String(run.id)) ?? []) {
      if (step.kind !== "wait" || step.status !== "completed") continue;
      const got = json(step.output) as { name: string; data: Record<string, unknown> } | null;
      if (String(step.name) === "recall") {
        // The k-th "recall" step looks back for the memo the run stored before its sleep: always there.
        const mid = `${plan.key}:${recalls[Number(String(step.id).split(":")[1] ?? 0)]}`;
        if (got?.name !== "sim/memo" || got.data.mid !== mid) fail(`wait "${step.id}" of run ${run.id} looked back for memo ${mid}, stored before it began, and got ${JSON.stringify(got)?.slice(0, 200)}`);
        continue;
      }
      if (String(step.name) === "reply") continue; // a callback's wait: see checkCallbacks
            if (String(step.name) === "signal") {
        // The k-th "signal" step waits for the signal of the k-th signal item: only that one, and only one its senders sent.
        const expected = signalName(String(run.event_id), signalItems[Number(String(step.id).split(":")[1] ?? 0)]!);
        const sentIds = new Set(ledger.signals.filter((send) => send.signal === expected).map((send) => send.id));
        if (got !== null && (got.name !== SIGNAL_EVENT || got.data.signal !== expected || ![0, 1].map((n) => signalEventId(`${expected}#${n}`)).includes(String((got as { id?: string }).id)))) {
          fail(`signal wait "${step.id}" of run ${run.id} (for ${expected}) resolved to ${JSON.stringify(got).slice(0, 200)}, not a signal sent to it (sent: ${[...sentIds].join(", ") || "none answered"})`);
        }
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
  await checkSignals(scene);
  checkCallbacks(scene);
}

/**
 * Every POST the simulation made to a callback URL: at most one per callback is taken (200), and
 * a wait that follows resolves to exactly that POST's body: a taken POST is never lost to the
 * wait's timeout, however close to it the POST came.
 */
function checkCallbacks(scene: Scene): void {
  const { played, ledger, runs, stepsByRun, fail } = scene;
  const byCallback = new Map<string, typeof ledger.callbackPosts>();
  for (const post of ledger.callbackPosts) {
    const key = `${post.runId}\n${post.stepId}`;
    byCallback.set(key, [...(byCallback.get(key) ?? []), post]);
  }
  for (const [key, posts] of byCallback) {
    const [runId, stepId] = key.split("\n") as [string, string];
    const run = runs.get(runId);
    if (!run) continue;
    const taken = posts.filter((post) => post.status === 200);
    if (taken.length > 1) fail(`callback "${stepId}" of run ${runId} took ${taken.length} POSTs (${taken.map((p) => JSON.stringify(p.body)).join(", ")}): a callback URL takes one`);
    const wrong = posts.find((post) => ![200, 409, 410].includes(post.status));
    if (wrong) fail(`a POST to callback "${stepId}" of run ${runId} was answered ${wrong.status}`);
    // The wait after the callback step: "reply" with the same counter.
    const waitId = stepId.replace(/^link/, "reply");
    const wait = (stepsByRun.get(runId) ?? []).find((s) => s.id === waitId);
    if (!wait || wait.status !== "completed") continue;
    const got = (json(wait.output) as { data?: { body?: unknown } } | null)?.data?.body;
    const winner = taken[0];
    if (got !== undefined && (!winner || JSON.stringify(got) !== JSON.stringify(winner.body))) {
      fail(`callback wait "${waitId}" of run ${runId} resolved to ${JSON.stringify(got)}, not the POST its URL took (${winner ? JSON.stringify(winner.body) : "none was answered 200"})`);
    }
    // A 200 means the run had the POST (its run was live under the lock), or its wait reads it when it opens.
    if (got === undefined && winner) {
      fail(`callback wait "${waitId}" of run ${runId} resolved null at +${new Date(String(wait.ended_at)).getTime() - played.startedAt}ms, though its URL took a POST at +${winner.to - played.startedAt}ms`);
    }
  }
}

/**
 * Every signal the simulation sent, against the store: one answered delivered is the output of
 * the wait it named; each stored signal is the output of exactly one wait, at most one per name;
 * a refused one was not stored, and was refused only when its run was not waiting all along.
 */
async function checkSignals(scene: Scene): Promise<void> {
  const { sql, played, ledger, runs, stepsByRun, fail } = scene;
  const runOfSignal = new Map<string, { run: Row; stepId: string }>();
  for (const run of runs.values()) {
    const plan = played.acked.find((a) => a.eventId === run.event_id);
    plan?.program.forEach((item, index) => {
      if (item.t !== "signal") return;
      const nth = plan.program.slice(0, index).filter((other) => other.t === "signal").length;
      runOfSignal.set(signalName(String(run.event_id), index), { run, stepId: nth === 0 ? "signal" : `signal:${nth}` });
    });
  }
  const waitOutputs = new Map<string, Array<{ runId: string; stepId: string }>>();
  for (const [runId, steps] of stepsByRun) {
    for (const step of steps) {
      const id = step.kind === "wait" && step.status === "completed" ? (json(step.output) as { id?: string } | null)?.id : undefined;
      if (id !== undefined) waitOutputs.set(id, [...(waitOutputs.get(id) ?? []), { runId, stepId: String(step.id) }]);
    }
  }
  const stored = (await sql.query("SELECT id, data FROM events WHERE name = $1 AND received_at >= $2", [SIGNAL_EVENT, new Date(played.startedAt - 10_000).toISOString()])).filter((event) =>
    runOfSignal.has((json(event.data) as { signal: string }).signal),
  );
  const storedIds = new Set(stored.map((event) => String(event.id)));
  const perName = new Map<string, string[]>();
  for (const event of stored) {
    const { signal } = json(event.data) as { signal: string };
    perName.set(signal, [...(perName.get(signal) ?? []), String(event.id)]);
    const takers = waitOutputs.get(String(event.id)) ?? [];
    if (takers.length !== 1) fail(`signal ${event.id} (${signal}) is stored, and ${takers.length} waits received it (${takers.map((t) => `run ${t.runId} "${t.stepId}"`).join(", ")}), not 1`);
  }
  for (const [signal, ids] of perName) if (ids.length > 1) fail(`signal ${signal} resumed ${ids.length} waits (${ids.join(", ")}): one run waits for a signal`);
  for (const send of ledger.signals) {
    const target = runOfSignal.get(send.signal);
    if (!target) continue;
    const { run, stepId } = target;
    if (send.outcome === "delivered") {
      const step = (stepsByRun.get(send.runId ?? "") ?? []).find((s) => s.id === send.stepId);
      const output = step ? (json(step.output) as { id?: string } | null) : undefined;
      if (send.runId !== run.id || send.stepId !== stepId || output?.id !== signalEventId(send.id)) {
        fail(`signal ${send.id} was answered delivered to run ${send.runId} "${send.stepId}", but the wait of ${run.id} "${stepId}" holds ${JSON.stringify(output)?.slice(0, 120)}`);
      }
    }
    if (send.outcome !== "refused") continue;
    if (storedIds.has(signalEventId(send.id))) fail(`signal ${send.id} was refused (404), yet it is stored`);
    // Refused though its run waited for it, committed and not timed out, for a good part of the
    // send's grace (the run live, no executor crashed or stalled meanwhile): the sender's tries
    // are at most 250 ms apart, and a wait's commit follows the executor's call within that.
    const step = (stepsByRun.get(String(run.id)) ?? []).find((s) => s.id === stepId);
    const opened = ledger.invocations.find((inv) => inv.runId === run.id && inv.waits.includes(stepId) && inv.delivery === "delivered")?.endedAt;
    // (A wait that received a signal, another sender's, is no longer waiting.)
    if (!step || opened === undefined || json(step.output) != null || ["cancelled", "failed"].includes(String(run.status))) continue;
    const timeoutAt = new Date(String(step.wake_at)).getTime();
    const from = Math.max(opened, send.from);
    const to = Math.min(timeoutAt, send.to, ledger.endsAcked.get(String(run.id)) ?? Infinity);
    if (to - from > 1_000 && !ledger.disturbed(opened - 1_000, send.to)) {
      fail(`signal ${send.id} was refused (404) at +${send.to - played.startedAt}ms, though run ${run.id} had waited for it in "${stepId}" from +${opened - played.startedAt}ms to its timeout at +${timeoutAt - played.startedAt}ms`);
    }
  }
}
