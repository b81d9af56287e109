/**
 * The performance targets Stepwise holds itself to, checked against one run of the benchmark,
 * each beside the same work done by hand in that run: the round trips and commits alone, in
 * Node, with nothing of Stepwise in them (see baselines.ts). Where the work by hand misses a
 * target too, the target asks for about what, or less than, those round trips took by hand on
 * this machine (the work by hand is a reference, not a strict lower bound: see baselines.ts);
 * how far Stepwise is above it is Stepwise's own cost, whichever way the target went.
 */
import { HAND_CHAINS, type Baselines } from "./baselines.ts";
import { commitMs, type TopologyResult, w1FlatRatio, w1Of } from "./report.ts";
import type { TopologyName } from "./topologies.ts";

/** One target on one topology. */
export interface TargetFigure {
  /** Stepwise's figure, as printed. */
  figure: string;
  met: boolean;
  /** The same target measured by hand in this run, where there is such a thing. */
  byHand?: { figure: string; meets: boolean; /** Stepwise's figure over it, in the target's sense (time, or time per step). */ times: number };
}

export interface TargetCheck {
  target: string;
  figures: Partial<Record<TopologyName, TargetFigure>>;
}

type Goal = { atMost: number } | { atLeast: number };
const meets = (value: number, goal: Goal) => ("atMost" in goal ? value <= goal.atMost : value >= goal.atLeast);

/** Every target, evaluated on `results` (by topology) and this run's baselines. */
export function checkTargets(results: Partial<Record<TopologyName, TopologyResult>>, b: Baselines): TargetCheck[] {
  const entries = Object.entries(results) as Array<[TopologyName, TopologyResult]>;
  const floor = (name: TopologyName) => b.httpNodeMs + commitMs(name, b);
  // The steps by hand commit over TCP; on another topology their commit is that topology's own.
  const withCommitOf = (name: TopologyName, handMs: number) => handMs - b.postgresTcpCommitMs + commitMs(name, b);
  const handStep = (name: TopologyName) => withCommitOf(name, b.handStepMs);
  const x = (value: number) => `${value.toFixed(2)}x`;
  const ms = (value: number) => `${value} ms`;
  const checks: TargetCheck[] = [];
  /**
   * `stepwise` and `byHand` give the figure on a topology (or undefined where it does not
   * apply); `times` is Stepwise's time over the time by hand (by default the two figures'
   * quotient: both are times, or ratios to one floor).
   */
  const add = (
    target: string,
    goal: Goal,
    show: (value: number) => string,
    stepwise: (name: TopologyName, r: TopologyResult) => number | undefined,
    byHand?: (name: TopologyName) => number,
    times: (value: number, hand: number, r: TopologyResult) => number = (value, hand) => value / hand,
  ) => {
    const figures: TargetCheck["figures"] = {};
    for (const [name, r] of entries) {
      const value = stepwise(name, r);
      if (value === undefined) continue;
      const hand = byHand?.(name);
      figures[name] = {
        figure: show(value),
        met: meets(value, goal),
        ...(hand !== undefined && { byHand: { figure: show(hand), meets: meets(hand, goal), times: times(value, hand, r) } }),
      };
    }
    if (Object.keys(figures).length > 0) checks.push({ target, figures });
  };
  add("W1 checkpointed: ms per step <= 1.0x HTTP + commit", { atMost: 1.0 }, x, (name, r) => w1Of(r, 1_000, true).perStepMs / floor(name), (name) => handStep(name) / floor(name));
  add("W1 one invocation per step: ms per step <= 2.0x HTTP + commit", { atMost: 2.0 }, x, (name, r) => w1Of(r, 50, false).perStepMs / floor(name), (name) => handStep(name) / floor(name));
  add("W1 checkpointed: 1,000 steps <= 1.1x the per-step cost of 50", { atMost: 1.1 }, x, (_, r) => w1FlatRatio(r, true));
  // Without checkpoints an invocation carries the run's history: by hand, the step made as such
  // an invocation (signed, posted, checked, parsed, one row committed) at the average history of
  // a 50-step run (25 steps stored) and of a 1,000-step run (500), with the topology's commit.
  const { shortMs, longMs } = b.plainByHand;
  add(
    "W1 one invocation per step: 1,000 steps <= 1.1x the per-step cost of 50",
    { atMost: 1.1 },
    x,
    (_, r) => w1FlatRatio(r, false),
    (name) => withCommitOf(name, longMs) / withCommitOf(name, shortMs),
    // What a step at 1,000 adds over one at 50, in ms, over what it adds by hand (none when by hand it added nothing to speak of).
    (_, __, r) => (longMs - shortMs > 0.01 ? (w1Of(r, 1_000, false).perStepMs - w1Of(r, 50, false).perStepMs) / (longMs - shortMs) : NaN),
  );
  const tcp = (name: TopologyName) => name === "postgres-tcp";
  const redis = (name: TopologyName) => name === "postgres+redis";
  // W2 by hand measured in turn with the topology's W2 where it was, and Stepwise over it as the
  // median of the pairs' ratios: the same moments of the machine. Else the baselines'.
  const w2ByHand = (name: TopologyName) => results[name]?.w2ByHand?.stepsPerSecond ?? b.handW2StepsPerSecond;
  const rate = (value: number, hand: number, r: TopologyResult) => r.w2ByHandRatio ?? hand / value;
  add("W2 steps/s on PostgreSQL (TCP) >= 3,000", { atLeast: 3_000 }, String, (name, r) => (tcp(name) ? r.w2Steady.stepsPerSecond : undefined), w2ByHand, rate);
  add("W2 steps/s on PostgreSQL + Redis >= 1,500", { atLeast: 1_500 }, String, (name, r) => (redis(name) ? r.w2Steady.stepsPerSecond : undefined), w2ByHand, rate);
  add("W3 lateness p50 <= 5 ms", { atMost: 5 }, ms, (_, r) => r.w3.p50, () => b.handSleepers.p50Ms);
  add("W3 lateness max <= 20 ms", { atMost: 20 }, ms, (_, r) => r.w3.max, () => b.handSleepers.maxMs);
  add("W4 event answered -> first step p50 <= 3 ms", { atMost: 3 }, ms, (_, r) => r.w4.p50);
  // Flat: once warm, the executor ends the soak within 5% of where it was.
  add("memory once warm, end of the soak <= +5%", { atMost: 0.05 }, (v) => `${v >= 0 ? "+" : ""}${(v * 100).toFixed(1)}%`, (_, r) => (r.soak ? (r.soak.rssEndMb - r.soak.rssStartMb) / r.soak.rssStartMb : undefined));
  return checks;
}

/** One cell: Stepwise's figure, and where there is one, the work by hand's and Stepwise over it. */
export function cellOf(figure: TargetFigure | undefined): string {
  if (!figure) return "-";
  const mark = figure.met ? "met" : "MISSED";
  if (!figure.byHand) return `${figure.figure} ${mark}`;
  const hand = `${figure.byHand.figure}${figure.byHand.meets ? "" : " MISSED"}`;
  const times = Number.isFinite(figure.byHand.times) ? `${figure.byHand.times.toFixed(1)}x` : "n/a";
  return `${figure.figure} ${mark} (by hand ${hand}; ${times})`;
}

export function printTargets(checks: TargetCheck[], names: TopologyName[]): void {
  const rows = [["target", ...names]];
  for (const check of checks) rows.push([check.target, ...names.map((name) => cellOf(check.figures[name]))]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  console.log(
    "Targets, each beside the same work by hand in this run (a step by hand with the topology's commit; W2: 200 runs of 5 steps by hand, " +
      `${HAND_CHAINS} at once, in turn with the topology's W2, and Stepwise over it the median of the pairs; W3: twenty sleeping runs by hand; W1 one invocation per step at 1,000: a step by hand posted as an invocation ` +
      "carrying the run's history, 500 steps against 25). (N.Nx) = Stepwise's time over the time by hand (for that flat-cost row: what a step at 1,000 adds " +
      "over one at 50, Stepwise's over by hand's). A target the work by hand misses too asks for about what, " +
      "or less than, the same round trips took by hand here:",
  );
  for (const [index, row] of rows.entries()) {
    console.log(`| ${row.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`);
    if (index === 0) console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  }
}
