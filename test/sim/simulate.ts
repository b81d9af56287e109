/**
 * Plays schedules on one topology until enough runs have gone through, checking every promise
 * after each; the totals say how hard the system was pushed (runs, injected faults, extra body
 * executions by cause) and what broke. Shared by `npm run sim` and the slice in `npm test`.
 */
import { check } from "./invariants/index.ts";
import { drawSchedule } from "./schedule.ts";
import { openTopology, type TopologyName } from "./topologies.ts";
import { play } from "./world.ts";

export interface SimOptions {
  topology: TopologyName;
  /** Seed of schedule 0; schedule i uses `seed + i`. */
  seed: number;
  /** First schedule to play (to replay one: `from` = its index, `schedules` = 1). */
  from?: number;
  /** Stop once this many runs went through... */
  runs?: number;
  /** ...or after this many schedules, whichever comes first. */
  schedules?: number;
  /** Burst size: 1 = 10 to 50 times the executors' total concurrency. */
  scale?: number;
  /** Every schedule gets every kind of fault (crash, stall, flush, restart, network). */
  everyFault?: boolean;
  progress?: (line: string) => void;
}

export interface SimTotals {
  topology: TopologyName;
  schedules: number;
  runs: number;
  steps: number;
  invocations: number;
  faults: Record<string, number>;
  /** Checkpoints the app heard committed, and those the executors refused. */
  /** Checkpoints the app heard committed and refused; batches sent and the checkpoints they carried. */
  checkpoints: { committed: number; refused: number; batches: number; batched: number };
  /** Reads of stored outputs an invocation left out, that reached an executor. */
  outputReads: number;
  /** Publishes the executors took, and the messages the store held at the end. */
  publishes: { taken: number; stored: number };
  /** Requests made for fetch steps, and those a run's end stopped. */
  fetches: { calls: number; dropped: number };
  /** Signals sent from outside, by how the executors answered. */
  signals: Record<string, number>;
  /** POSTs to callback URLs, by the HTTP status they got. */
  callbackPosts: Record<string, number>;
  extraBodies: Record<string, number>;
  violations: Array<{ schedule: number; replay: string; lines: string[] }>;
  seconds: number;
}

export async function simulate(options: SimOptions): Promise<SimTotals> {
  const started = Date.now();
  const progress = options.progress ?? (() => {});
  const totals: SimTotals = { topology: options.topology, schedules: 0, runs: 0, steps: 0, invocations: 0, faults: {}, checkpoints: { committed: 0, refused: 0, batches: 0, batched: 0 }, outputReads: 0, publishes: { taken: 0, stored: 0 }, fetches: { calls: 0, dropped: 0 }, signals: {}, callbackPosts: {}, extraBodies: {}, violations: [], seconds: 0 };
  const topology = await openTopology(options.topology);
  const maxRuns = options.runs ?? Infinity;
  const maxSchedules = options.schedules ?? Infinity;
  try {
    for (let index = options.from ?? 0; totals.runs < maxRuns && totals.schedules < maxSchedules; index++) {
      const scheduleStarted = Date.now();
      const schedule = drawSchedule(options.seed + index, index, options.scale ?? 1, options.everyFault);
      const played = await play(topology, schedule);
      const checked = await check(topology.sql, played);
      totals.schedules++;
      totals.runs += checked.runs;
      totals.steps += checked.steps;
      totals.invocations += checked.invocations;
      for (const [kind, n] of played.ledger.faults) totals.faults[kind] = (totals.faults[kind] ?? 0) + n;
      totals.checkpoints.committed += played.ledger.checkpointsCommitted;
      totals.checkpoints.refused += played.ledger.refusedCheckpoints.filter((r) => r.how === "refused").length;
      totals.checkpoints.batches += played.ledger.checkpointBatches.length;
      totals.checkpoints.batched += played.ledger.checkpointBatches.reduce((sum, n) => sum + n, 0);
      totals.outputReads += played.ledger.outputReads;
      totals.publishes.taken += played.ledger.publishesTaken;
      totals.publishes.stored += checked.messages;
      totals.fetches.calls += checked.fetches.calls;
      totals.fetches.dropped += checked.fetches.dropped;
      for (const { outcome } of played.ledger.signals) totals.signals[outcome] = (totals.signals[outcome] ?? 0) + 1;
      for (const { status } of played.ledger.callbackPosts) totals.callbackPosts[status] = (totals.callbackPosts[status] ?? 0) + 1;
      for (const [cause, n] of checked.extraBodies) totals.extraBodies[cause] = (totals.extraBodies[cause] ?? 0) + n;
      const seconds = ((Date.now() - scheduleStarted) / 1_000).toFixed(1);
      progress(
        `[sim ${options.topology}] schedule ${index}: ${checked.runs} runs, ${checked.steps} steps, ${checked.invocations} invocations, ` +
          `${[...played.ledger.faults.values()].reduce((a, b) => a + b, 0)} faults, ${checked.violations.length} violations, ${seconds}s, ` +
          `idle CPU ${(played.idleCpu / played.idleReferenceCpu).toFixed(1)}x the reference, ` +
          `slowest graceful stop ${played.stops.length > 0 ? `${Math.max(...played.stops)} ms` : "none"} ` +
          `(total ${totals.runs} runs)`,
      );
      if (checked.violations.length > 0) {
        const replay =
          `npm run sim -- --topology ${options.topology} --seed ${options.seed} --from ${index} --schedules 1` +
          `${options.scale && options.scale !== 1 ? ` --scale ${options.scale}` : ""}${options.everyFault ? " --every-fault" : ""}`;
        totals.violations.push({ schedule: index, replay, lines: checked.violations });
        progress(`[sim ${options.topology}] schedule ${index} broke ${checked.violations.length} promise(s); replay with: ${replay}`);
        for (const line of checked.violations.slice(0, 20)) progress(`  - ${line}`);
        for (const line of played.executorLines.slice(-15)) progress(`    executor: ${line}`);
      }
    }
  } finally {
    await topology.close();
  }
  totals.seconds = Math.round((Date.now() - started) / 1_000);
  return totals;
}

/** The totals as a few readable lines. */
export function describeTotals(t: SimTotals): string {
  const kinds = (record: Record<string, number>) =>
    Object.entries(record)
      .sort((a, b) => b[1] - a[1])
      .map(([kind, n]) => `${kind} ${n}`)
      .join(", ") || "none";
  return [
    `${t.topology}: ${t.schedules} schedules, ${t.runs} runs, ${t.steps} steps, ${t.invocations} invocations in ${t.seconds}s`,
    `  checkpoints: ${t.checkpoints.committed} committed, ${t.checkpoints.refused} refused; ${t.checkpoints.batches} batches carried ${t.checkpoints.batched}; left-out outputs read ${t.outputReads} times`,
    `  signals sent: ${kinds(t.signals)}; callback POSTs answered: ${kinds(t.callbackPosts)}`,
    `  publishes taken: ${t.publishes.taken}, messages stored: ${t.publishes.stored}; fetch requests: ${t.fetches.calls}, stopped by their run's end: ${t.fetches.dropped}`,
    `  faults injected: ${kinds(t.faults)}`,
    `  extra step-body executions: ${kinds(t.extraBodies)}`,
    `  invariant violations: ${t.violations.reduce((n, v) => n + v.lines.length, 0)}`,
  ].join("\n");
}
