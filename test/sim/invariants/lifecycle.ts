/**
 * Runs from start to end: every acknowledged event has its one run, every run ends, nothing is
 * committed twice or changed after its end, onFailure runs once per failed run, and a completed
 * run returned what the store holds.
 */
import { derivedEventId } from "@stepwise/protocol";
import { expectedJobs, type RunState } from "@stepwise/engine";
import { IN, json, localId, stepRecord, type Scene } from "./scene.ts";

export async function checkLifecycle(scene: Scene): Promise<void> {
  const { sql, played, runs, runIds, stepsByRun, fail } = scene;
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
      const stored = json(step.output) ?? null;
      // A signal wait stores the signal's event; the function sees its `{ signal, data }`,
      // and a callback wait, the POST's `{ body, headers }`.
      const data = (stored as { data?: Record<string, unknown> } | null)?.data;
      // A fetch step stores the response; the function read its status and text.
      const response = String(step.kind) === "fetch" ? (stored as { status: number; body: string } | null) : null;
      const received = response
        ? { status: response.status, body: response.body }
        : stored === null || !data
          ? stored
          : String(step.name) === "signal"
            ? { signal: data.signal, data: data.data }
            : String(step.name) === "reply"
              ? { body: data.body, headers: data.headers }
              : stored;
      const expected = step.status === "failed" ? { caught: (json(step.error) as { name: string }).name } : received;
      if (JSON.stringify(seen) !== JSON.stringify(expected)) {
        fail(`run ${run.id} step "${step.id}": the function saw ${JSON.stringify(seen)?.slice(0, 120)}, the store holds ${JSON.stringify(expected)?.slice(0, 120)}`);
      }
    });
  }
}
