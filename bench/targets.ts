/**
 * The performance targets Stepwise holds itself to, checked against one run of the benchmark,
 * each beside the same target met by hand: the least those round trips and commits take on
 * this machine with nothing of Stepwise in them (see baselines.ts). A target the hand-made
 * version misses too cannot be met here by any executor in Node, so a miss says which it is:
 * below that floor, or Stepwise's own.
 */
import { HAND_CHAINS, type Baselines } from "./baselines.ts";
import { commitMs, type TopologyResult, w1Of } from "./report.ts";
import type { TopologyName } from "./topologies.ts";

export interface TargetCheck {
  target: string;
  /** The figure on each topology that has it, as printed. */
  figures: Partial<Record<TopologyName, string>>;
  met: boolean;
  /** What the same target measures by hand in this run, and whether that meets it; absent where nothing bounds it but the machine. */
  byHand?: { figure: string; meets: boolean };
}

const x = (ratio: number) => `${ratio.toFixed(2)}x`;
const ms = (value: number) => `${value} ms`;

/** Every target, evaluated on `results` (by topology) and this run's baselines. */
export function checkTargets(results: Partial<Record<TopologyName, TopologyResult>>, b: Baselines): TargetCheck[] {
  const entries = Object.entries(results) as Array<[TopologyName, TopologyResult]>;
  const floor = (name: TopologyName) => b.httpNodeMs + commitMs(name, b);
  // The step by hand commits over TCP: its ratio is to that floor.
  const handOverFloor = b.handStepMs / (b.httpNodeMs + b.postgresTcpCommitMs);
  const checks: TargetCheck[] = [];
  const each = (figure: (name: TopologyName, r: TopologyResult) => number | undefined) =>
    entries.flatMap(([name, r]) => {
      const value = figure(name, r);
      return value === undefined ? [] : [[name, value] as const];
    });
  const add = (target: string, values: ReadonlyArray<readonly [TopologyName, number]>, meets: (value: number) => boolean, show: (value: number) => string, byHand?: number) => {
    if (values.length === 0) return;
    checks.push({
      target,
      figures: Object.fromEntries(values.map(([name, value]) => [name, show(value)])),
      met: values.every(([, value]) => meets(value)),
      ...(byHand !== undefined && { byHand: { figure: show(byHand), meets: meets(byHand) } }),
    });
  };

  add("W1 checkpointed, per step <= 1.0x HTTP + commit", each((name, r) => w1Of(r, 1_000, true).perStepMs / floor(name)), (v) => v <= 1.0, x, handOverFloor);
  add("W1 one invocation per step, per step <= 2.0x HTTP + commit", each((name, r) => w1Of(r, 50, false).perStepMs / floor(name)), (v) => v <= 2.0, x, handOverFloor);
  add("W1 checkpointed, 1,000 steps <= 1.1x the per-step cost of 50", each((_, r) => w1Of(r, 1_000, true).perStepMs / w1Of(r, 50, true).perStepMs), (v) => v <= 1.1, x);
  // Without checkpoints every invocation carries the history and replays it: the history's JSON
  // alone (each topology's own 50-step cost plus what carrying 500 steps adds over 25) bounds it.
  const growth = b.historyJson.longMs - b.historyJson.shortMs;
  const plainRatios = each((_, r) => w1Of(r, 1_000, false).perStepMs / w1Of(r, 50, false).perStepMs);
  const plainFloors = entries.map(([, r]) => (w1Of(r, 50, false).perStepMs + growth) / w1Of(r, 50, false).perStepMs);
  add("W1 one invocation per step, 1,000 steps <= 1.1x the per-step cost of 50", plainRatios, (v) => v <= 1.1, x, Math.min(...plainFloors));
  add("W2 >= 3,000 steps/s on PostgreSQL (TCP)", each((name, r) => (name === "postgres-tcp" ? r.w2Steady.stepsPerSecond : undefined)), (v) => v >= 3_000, String, b.handStepsPerSecond);
  add("W2 >= 1,500 steps/s on PostgreSQL + Redis", each((name, r) => (name === "postgres+redis" ? r.w2Steady.stepsPerSecond : undefined)), (v) => v >= 1_500, String, b.handStepsPerSecond);
  add("W3 lateness p50 <= 5 ms", each((_, r) => r.w3.p50), (v) => v <= 5, ms, b.handSleepers.p50Ms);
  add("W3 lateness max <= 20 ms", each((_, r) => r.w3.max), (v) => v <= 20, ms, b.handSleepers.maxMs);
  add("W4 event answered -> first step p50 <= 3 ms", each((_, r) => r.w4.p50), (v) => v <= 3, ms);
  // Flat: once warm, the executor ends the soak within 5% of where it was.
  add("memory flat over the soak once warm", each((_, r) => (r.soak ? (r.soak.rssEndMb - r.soak.rssStartMb) / r.soak.rssStartMb : undefined)), (v) => v <= 0.05, (v) => `${v >= 0 ? "+" : ""}${(v * 100).toFixed(1)}%`);
  return checks;
}

/** What a check says, in a few words: met, or missed and whether the floor by hand misses it too. */
export function verdict(check: TargetCheck): string {
  if (check.met) return "met";
  if (!check.byHand) return "missed";
  return check.byHand.meets ? "missed: by hand meets it" : "missed: below the floor by hand";
}

export function printTargets(checks: TargetCheck[], names: TopologyName[]): void {
  const rows = [["target", ...names, "by hand", "verdict"]];
  for (const check of checks) rows.push([check.target, ...names.map((name) => check.figures[name] ?? "-"), check.byHand?.figure ?? "-", verdict(check)]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  console.log("Targets, each beside the same measured by hand in this run (W1: a step by hand over the floor; W2: steps by hand,");
  console.log(`${HAND_CHAINS} at once; W3: twenty sleeping runs by hand; W1 without checkpoints at 1,000: the history's JSON alone):`);
  for (const [index, row] of rows.entries()) {
    console.log(`| ${row.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`);
    if (index === 0) console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  }
}
