/**
 * The benchmark's table: each figure, and its ratio to the baselines measured in the same run.
 * The floor of a step is one loopback HTTP round trip (the cheapest: node:http, kept alive) plus
 * one durable commit on that topology's own store path (PGlite for embedded, the pg driver over
 * TCP, the Neon driver through its bridge).
 */
import { DEFAULT_CONCURRENCY } from "@stepwise/engine";
import { HAND_BURST, HAND_CHAINS, type Baselines } from "./baselines.ts";
import { checkTargets, printTargets } from "./targets.ts";
import type { TopologyName } from "./topologies.ts";
import { TENANTS, W1_ROUNDS, W2_REPETITIONS, W3_ROUNDS, type ThrottleResult, type LatencyResult, type SoakResult, type W1Pairs, type W2Result, type W2Steady, type W3Result } from "./workloads.ts";

export interface TopologyResult {
  /** W1 per mode: rounds of 1,000 and 50 steps, each length's median and the paired ratio. */
  w1: W1Pairs[];
  /** A plain 50-step run's time per step over a checkpointed one's, paired by round (absent from reports written before it was). */
  w1PlainOverCheckpointed?: number;
  /** The first W2 after the executor started: its JIT has not compiled a burst's paths yet. */
  w2: W2Result;
  w2Steady: W2Steady;
  /** W2 of a function with a concurrency key, measured in turn with `w2Steady`. */
  w2Keyed: W2Steady;
  /** Keyed W2's time per step over plain W2's: the median of the pairs' ratios. */
  w2KeyedRatio: number;
  /** W2 by hand, measured in turn with `w2Steady` (absent from reports written before it was). */
  w2ByHand?: W2Steady;
  /** Plain W2's time per step over W2 by hand's, the median of the pairs' ratios. */
  w2ByHandRatio?: number;
  burst: W2Result;
  burstKeyed: W2Result;
  throttle: ThrottleResult;
  w3: W3Result;
  /** One run sleeping at a time: the timer's own lateness. */
  w3Alone: LatencyResult;
  w4: LatencyResult & { fromSend: LatencyResult };
  soak?: SoakResult;
  rssStartMb: number;
  rssEndMb: number;
}

/** One commit on the store path the topology's executor writes through. */
export function commitMs(name: TopologyName, b: Baselines): number {
  if (name === "embedded") return b.pgliteCommitMs;
  if (name === "postgres-tcp") return b.postgresTcpCommitMs;
  return b.postgresCommitMs;
}

const w1Mode = (r: TopologyResult, checkpointed: boolean) => r.w1.find((w) => w.checkpointed === checkpointed)!;
export const w1Of = (r: TopologyResult, steps: 50 | 1_000, checkpointed: boolean) => (steps === 50 ? w1Mode(r, checkpointed).short : w1Mode(r, checkpointed).long);
/** The mode's 1,000-step time per step over its 50-step one, the median of the rounds' pairs. */
export const w1FlatRatio = (r: TopologyResult, checkpointed: boolean) => w1Mode(r, checkpointed).flatRatio;

export function printReport(report: { baselines: Baselines; results: Record<string, unknown>; concurrency?: number; executor: string }): void {
  const { baselines: b } = report;
  console.log("");
  console.log(
    `Baselines: loopback HTTP ${b.httpNodeMs.toFixed(3)} ms over node:http kept alive (${b.httpMs.toFixed(3)} ms through fetch); INSERT+COMMIT over TCP ${b.postgresTcpCommitMs.toFixed(3)} ms, ` +
      `through the Neon driver ${b.postgresCommitMs.toFixed(3)} ms, on PGlite ${b.pgliteCommitMs.toFixed(3)} ms; Redis round trip ${b.redisMs.toFixed(3)} ms; ` +
      `a step by hand (POST to a node:http server process that commits one row over TCP) ${b.handStepMs.toFixed(3)} ms, ` +
      `${b.handStepsPerSecond} steps/s with ${HAND_CHAINS} at once; ${HAND_BURST} started together end after ${b.handBurst.p50Ms} ms (p50), ${b.handBurst.maxMs} ms (the last); one after 2 s idle ${b.handStepAfterIdleMs} ms; ` +
      `W2 by hand (200 runs' round trips and commits, ${HAND_CHAINS} at once) ${b.handW2StepsPerSecond} steps/s; ` +
      `W3 by hand (20 sleeping runs' round trips and commits) late ${b.handSleepers.p50Ms} ms (p50), ${b.handSleepers.maxMs} ms (max); ` +
      `the step by hand as an invocation carrying a run's history (stringified, signed, posted, checked, parsed, one row committed) ${b.plainByHand.shortMs} ms at ${b.plainByHand.shortSteps} stored steps, ${b.plainByHand.longMs} ms at ${b.plainByHand.longSteps}`,
  );
  console.log("");
  const names = Object.keys(report.results) as TopologyName[];
  const results = Object.values(report.results) as TopologyResult[];
  const floors = names.map((name) => b.httpNodeMs + commitMs(name, b));
  const rows: string[][] = [["workload", ...names], ["floor: HTTP + commit (ms)", ...floors.map((f) => f.toFixed(3))]];
  const cell = (fn: (r: TopologyResult, floor: number) => string) => results.map((r, i) => fn(r, floors[i]!));
  const x = (value: number, base: number) => `${(value / base).toFixed(2)}x`;
  for (const checkpointed of [true, false]) {
    const mode = checkpointed ? "checkpointed" : "one invocation per step";
    for (const steps of [50, 1_000] as const) {
      rows.push([`W1 ${steps} steps, ${mode}: ms/step, median of ${W1_ROUNDS}`, ...cell((r, floor) => `${w1Of(r, steps, checkpointed).perStepMs.toFixed(2)} (${x(w1Of(r, steps, checkpointed).perStepMs, floor)})`)]);
    }
    rows.push([`W1 ${mode}: 1,000 / 50 per step, median of ${W1_ROUNDS} pairs`, ...cell((r) => `${w1FlatRatio(r, checkpointed).toFixed(2)}x`)]);
    rows.push([`W1 ${mode}: last 100 / first 100 steps of a 1,000-step run`, ...cell((r) => `${w1Mode(r, checkpointed).lastOverFirst.toFixed(2)}x`)]);
    if (checkpointed) rows.push(["W1 1000 checkpointed / a step by hand", ...cell((r) => x(w1Of(r, 1_000, true).perStepMs, b.handStepMs))]);
  }
  rows.push([`W1 50 steps, one invocation per step / checkpointed, median of ${W1_ROUNDS} pairs`, ...cell((r) => (r.w1PlainOverCheckpointed !== undefined ? `${r.w1PlainOverCheckpointed.toFixed(2)}x` : "-"))]);
  // Throughput as time per step, so it compares with the round trips a step needs.
  rows.push([`W2 steps/s (200 runs x 5), warm: median of ${W2_REPETITIONS}`, ...cell((r, floor) => `${r.w2Steady.stepsPerSecond} (${x(1000 / r.w2Steady.stepsPerSecond, floor)})`)]);
  rows.push(["W2 the first time after start: steps/s", ...cell((r) => `${r.w2.stepsPerSecond}`)]);
  rows.push([`W2 warm / steps by hand, ${HAND_CHAINS} at once`, ...cell((r) => x(r.w2Steady.stepsPerSecond, b.handStepsPerSecond))]);
  rows.push(["W2 warm / W2 by hand (the baselines')", ...cell((r) => x(r.w2Steady.stepsPerSecond, b.handW2StepsPerSecond))]);
  rows.push([`W2 by hand in turn with W2: steps/s, median of ${W2_REPETITIONS}`, ...cell((r) => (r.w2ByHand ? `${r.w2ByHand.stepsPerSecond}` : "-"))]);
  rows.push([`W2 / W2 by hand in turn: time per step, median of ${W2_REPETITIONS} pairs`, ...cell((r) => (r.w2ByHandRatio !== undefined ? `${r.w2ByHandRatio.toFixed(2)}x` : "-"))]);
  rows.push([`W2 with a concurrency key (${TENANTS} values, 10 each), warm: steps/s`, ...cell((r) => `${r.w2Keyed.stepsPerSecond}`)]);
  rows.push([`W2 keyed / W2: time per step, median of ${W2_REPETITIONS} pairs`, ...cell((r) => `${r.w2KeyedRatio.toFixed(2)}x`)]);
  rows.push(["burst 1,000 runs x 5: s, steps/s", ...cell((r) => `${r.burst.seconds} s, ${r.burst.stepsPerSecond}`)]);
  rows.push(["burst 1,000 keyed runs x 5: s, steps/s", ...cell((r) => `${r.burstKeyed.seconds} s, ${r.burstKeyed.stepsPerSecond}`)]);
  rows.push(["throttle 50/s, 250 runs at once: starts/s (/ configured)", ...cell((r) => `${r.throttle.observed} (${x(r.throttle.observed, r.throttle.configured)})`)]);
  rows.push(["throttle, from the 26th start: starts/s (/ configured)", ...cell((r) => `${r.throttle.steady} (${x(r.throttle.steady, r.throttle.configured)})`)]);
  rows.push([`W3 20 runs sleep 2s: late p50 / p99 / max (ms), median of ${W3_ROUNDS} rounds`, ...cell((r, floor) => `${r.w3.p50} / ${r.w3.p99} / ${r.w3.max} (${x(r.w3.p50, floor)})`)]);
  rows.push(["W3 its first round: late p50 / max (ms)", ...cell((r) => `${r.w3.first.p50} / ${r.w3.first.max}`)]);
  rows.push([`W3 late / ${HAND_BURST} steps by hand at once: p50, max`, ...cell((r) => `${x(r.w3.p50, b.handBurst.p50Ms)}, ${x(r.w3.max, b.handBurst.maxMs)}`)]);
  rows.push(["W3 late / W3 by hand: p50, max", ...cell((r) => `${x(r.w3.p50, b.handSleepers.p50Ms)}, ${x(r.w3.max, b.handSleepers.maxMs)}`)]);
  rows.push(["W3 one run sleeping 2s alone: late p50 / max (ms)", ...cell((r, floor) => `${r.w3Alone.p50} / ${r.w3Alone.max} (${x(r.w3Alone.p50, floor)})`)]);
  rows.push(["W3 alone late / a step by hand after 2 s idle", ...cell((r) => x(r.w3Alone.p50, b.handStepAfterIdleMs))]);
  rows.push(["W4 event answered->step p50 / p99 (ms)", ...cell((r, floor) => `${r.w4.p50} / ${r.w4.p99} (${x(r.w4.p50, floor)})`)]);
  rows.push(["W4 event sent->step p50 / p99 (ms)", ...cell((r, floor) => `${r.w4.fromSend.p50} / ${r.w4.fromSend.p99} (${x(r.w4.fromSend.p50, floor)})`)]);
  rows.push(["RSS start -> end (MB)", ...cell((r) => `${r.rssStartMb} -> ${r.rssEndMb}`)]);
  rows.push([
    "soak RSS warm -> end MB (slope/min)",
    ...cell((r) => (r.soak ? `${r.soak.rssStartMb} -> ${r.soak.rssEndMb} (${r.soak.slopeMbPerMinute >= 0 ? "+" : ""}${r.soak.slopeMbPerMinute})` : "-")),
  ]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const [index, row] of rows.entries()) {
    console.log(`| ${row.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`);
    if (index === 0) console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  }
  console.log("");
  console.log(
    `executor ${report.executor === "compiled" ? "compiled (as installed)" : "from source through tsx"}, concurrency ${report.concurrency ?? `${DEFAULT_CONCURRENCY} (the default)`}; (N.NNx) = the figure over that topology's floor; ` +
      `for W2 the figure is the time per step, 1000 / steps per second; the step by hand commits over TCP on every topology`,
  );
  console.log("");
  printTargets(checkTargets(report.results as Partial<Record<TopologyName, TopologyResult>>, b), names);
}

/** Every latency-like figure of a topology over each baseline, for the JSON report. */
export function ratios(name: TopologyName, result: unknown, b: Baselines): Record<string, Record<string, number>> {
  const r = result as TopologyResult;
  const figures: Record<string, number> = {
    w1CheckpointedMs50: w1Of(r, 50, true).perStepMs,
    w1CheckpointedMs1000: w1Of(r, 1_000, true).perStepMs,
    w1PlainMs50: w1Of(r, 50, false).perStepMs,
    w1PlainMs1000: w1Of(r, 1_000, false).perStepMs,
    w2MsPerStep: 1000 / r.w2Steady.stepsPerSecond,
    w2FirstMsPerStep: 1000 / r.w2.stepsPerSecond,
    w2KeyedMsPerStep: 1000 / r.w2Keyed.stepsPerSecond,
    w3LateP50Ms: r.w3.p50,
    w3LateP99Ms: r.w3.p99,
    w3AloneLateP50Ms: r.w3Alone.p50,
    w4P50Ms: r.w4.p50,
    w4P99Ms: r.w4.p99,
    w4FromSendP50Ms: r.w4.fromSend.p50,
  };
  const commit = commitMs(name, b);
  const bases = { http: b.httpNodeMs, httpFetch: b.httpMs, commit, redis: b.redisMs, httpPlusCommit: b.httpNodeMs + commit, handStep: b.handStepMs };
  return Object.fromEntries(
    Object.entries(figures).map(([figure, value]) => [
      figure,
      Object.fromEntries(Object.entries(bases).map(([base, ms]) => [base, Math.round((value / ms) * 100) / 100])),
    ]),
  );
}
