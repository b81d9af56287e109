/**
 * Waits resolve to a matching event, or to null only when none arrived in time; a look-back finds
 * what its run stored before the wait began and never what the run received already.
 */
import { json, type Scene } from "./scene.ts";

export async function checkWaits(scene: Scene): Promise<void> {
  const { sql, played, ledger, runs, stepsByRun, fail } = scene;
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
}
