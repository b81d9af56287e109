/**
 * The workloads, each against a running topology and the bench app:
 *   W1 one run of N sequential step.run, checkpointed and not: time per step (flat in N?)
 *   W2 200 runs of 5 steps sent at once: steps per second, the first time and once warm; and a
 *      burst of 1,000 such runs. Keyed: the same runs of a function with a concurrency key of 50
 *      values (10 at once each), measured in turn with the plain ones
 *   throttle: a burst of 250 runs of a function throttled to 50 starts a second: the rate its
 *      runs start at, against the configured one
 *   W3 runs that sleep 2 s between two steps (20 in the report): how late the second step starts
 *   W4 time from POST /api/events answered to the run's first step starting
 *   soak: a steady load for a while, sampling the executor's memory
 */
import { now } from "./app.ts";
import type { Recorder as Probe } from "./recorder.ts";
import { median, middleOf, pairedRatio, percentile, round } from "./stats.ts";
import type { Topology } from "./topologies.ts";

async function send(topology: Topology, events: unknown): Promise<void> {
  const response = await fetch(`${topology.url}/api/events`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer bench" },
    body: JSON.stringify(events),
  });
  if (!response.ok) throw new Error(`send failed: ${response.status} ${await response.text()}`);
}

export interface W1Result {
  steps: number;
  checkpointed: boolean;
  totalMs: number;
  perStepMs: number;
  /** Runs of 200 steps or more: the time per step of the last 100 steps over that of the first 100, within the run. */
  lastOverFirst?: number;
}

/** One run of `steps` sequential steps; per step = first body to last body, over steps - 1. */
export async function w1(topology: Topology, probe: Probe, steps: number, checkpointed = true): Promise<W1Result> {
  probe.stepTimes.clear();
  const finished = probe.finishedAfter(1);
  const start = now();
  await send(topology, { name: checkpointed ? "bench/sequence" : "bench/sequence-plain", data: { steps } });
  await finished;
  const totalMs = now() - start;
  const [times] = [...probe.stepTimes.values()];
  const perStepMs = (times!.at(-1)! - times![0]!) / (steps - 1);
  const gap = (from: number, to: number) => (times![to]! - times![from]!) / (to - from);
  const lastOverFirst = steps >= 200 ? round(gap(steps - 101, steps - 1) / gap(0, 100), 3) : undefined;
  return { steps, checkpointed, totalMs: round(totalMs, 1), perStepMs: round(perStepMs, 3), ...(lastOverFirst !== undefined && { lastOverFirst }) };
}

/** Rounds of W1 pairs a mode is measured in: a run of 1,000 steps and one of 50, the order alternating. */
export const W1_ROUNDS = 5;

export interface W1Pairs {
  checkpointed: boolean;
  /** Each length's median over the rounds (its `perStepMs`), with every round's figure. */
  long: W1Result & { samples: number[] };
  short: W1Result & { samples: number[] };
  /** The 1,000-step run's time per step over the 50-step run's: the median of each round's pair. */
  flatRatio: number;
  /** Within each 1,000-step run, its last 100 steps' time per step over its first 100's: the median over the rounds. */
  lastOverFirst: number;
}

/** W1 in both modes, measured in the same rounds. */
export interface W1Modes {
  /** Checkpointed, then one invocation per step. */
  modes: [W1Pairs, W1Pairs];
  /** A plain 50-step run's time per step over a checkpointed one's: the median of each round's pair. */
  plainOverCheckpointed: number;
}

/**
 * W1 as a running executor does it: two runs of 1,000 steps (a run's most, by default) in each
 * mode to warm its paths (the executor's CPU per checkpointed step was still falling after
 * 2,000 steps, most on embedded, whose Postgres is WebAssembly: V8 compiling them), then
 * {@link W1_ROUNDS} rounds, each of a 1,000-step run and a 50-step run in both modes. Every
 * other round runs them in the reverse order, so none always runs on what another warmed.
 * The ratios are taken within each round, from runs measured in the same seconds: the
 * machine's speed drifts over a bench run (a checkpointed step read 1.42 ms in one round and
 * 0.81 in another), and each mode's rounds apart met different stretches of it (a plain step
 * read 1.1 to 1.7 times a checkpointed one from run to run).
 */
export async function w1Rounds(topology: Topology, probe: Probe, rounds = W1_ROUNDS): Promise<W1Modes> {
  const modes = [true, false] as const;
  for (const checkpointed of modes) for (let i = 0; i < 2; i++) await w1(topology, probe, 1_000, checkpointed);
  const runs = modes.map(() => ({ long: [] as W1Result[], short: [] as W1Result[] }));
  for (let i = 0; i < rounds; i++) {
    const order = modes.flatMap((checkpointed) => [1_000, 50].map((steps) => ({ checkpointed, steps })));
    for (const { checkpointed, steps } of i % 2 === 0 ? order : order.reverse()) {
      const mode = runs[checkpointed ? 0 : 1]!;
      (steps === 50 ? mode.short : mode.long).push(await w1(topology, probe, steps, checkpointed));
    }
  }
  const perStep = (r: W1Result) => r.perStepMs;
  const pairs = runs.map(({ long, short }, m): W1Pairs => ({
    checkpointed: modes[m]!,
    long: middleOf(long, perStep),
    short: middleOf(short, perStep),
    flatRatio: pairedRatio(long.map(perStep), short.map(perStep)),
    lastOverFirst: round(median(long.map((l) => l.lastOverFirst!)), 3),
  }));
  const [checkpointed, plain] = [pairs[0]!, pairs[1]!];
  // Each length's samples are its rounds' figures, in the order of the rounds.
  return { modes: [checkpointed, plain], plainOverCheckpointed: pairedRatio(plain.short.samples, checkpointed.short.samples) };
}

export interface W2Result {
  runs: number;
  seconds: number;
  stepsPerSecond: number;
}

/** A W2 burst of plain runs, or of runs with a concurrency key of {@link TENANTS} values. */
export type W2Kind = "plain" | "keyed";
export const TENANTS = 50;

export async function w2(topology: Topology, probe: Probe, runs = 200, kind: W2Kind = "plain"): Promise<W2Result> {
  const finished = probe.finishedAfter(runs);
  const start = performance.now();
  const name = kind === "keyed" ? "bench/burst-keyed" : "bench/burst";
  await send(topology, Array.from({ length: runs }, (_, n) => ({ name, data: { n, tenant: `t${n % TENANTS}` } })));
  await finished;
  const seconds = (performance.now() - start) / 1000;
  return { runs, seconds: round(seconds, 2), stepsPerSecond: Math.round((runs * 5) / seconds) };
}

export interface W2Steady extends W2Result {
  /** Steps per second of each measured repetition. */
  samples: number[];
}

/** Repetitions of W2 once warm, each kind once per repetition. */
export const W2_REPETITIONS = 9;

export interface W2SteadyResult extends Record<W2Kind, W2Steady> {
  /**
   * Keyed W2's time per step over plain W2's, the median of the ratios of each repetition's
   * pair. A pair meets the same moment of a shared machine, whose speed drifts by more than
   * the difference measured: the median of each kind alone swung by 15% between runs.
   */
  keyedRatio: number;
  /** W2 by hand, measured in turn with the others when a way to is given. */
  byHand?: W2Steady;
  /** Plain W2's time per step over W2 by hand's, the median of each repetition's pair. */
  byHandRatio?: number;
}

/**
 * W2 as a running executor does it: `warmups` repetitions first (the JIT compiles the paths a
 * burst of concurrent runs takes; the first W2 after start runs at about half the speed of the
 * fifth), then the median of `repetitions`, plain and keyed in turn.
 */
export async function w2Steady(topology: Topology, probe: Probe, warmups = 3, repetitions = W2_REPETITIONS, byHand?: () => Promise<number>): Promise<W2SteadyResult> {
  type Kind = W2Kind | "by hand";
  const kinds: Kind[] = byHand ? ["plain", "keyed", "by hand"] : ["plain", "keyed"];
  const once = async (kind: Kind): Promise<W2Result> => {
    if (kind !== "by hand") return w2(topology, probe, 200, kind);
    const stepsPerSecond = await byHand!();
    return { runs: 200, seconds: round((200 * 5) / stepsPerSecond, 2), stepsPerSecond };
  };
  for (let i = 0; i < warmups; i++) for (const kind of kinds) await once(kind);
  const results: Record<Kind, W2Result[]> = { plain: [], keyed: [], "by hand": [] };
  // Each kind goes first in every other round, so none always meets what another left behind.
  for (let i = 0; i < repetitions; i++) for (const kind of i % 2 === 0 ? kinds : [...kinds].reverse()) results[kind].push(await once(kind));
  const steady = (list: W2Result[]): W2Steady => middleOf(list, (r) => r.stepsPerSecond);
  /** `slower`'s time per step over `faster`'s, the median of each round's pair. */
  const timeRatio = (slower: W2Result[], faster: W2Result[]) => pairedRatio(faster.map((r) => r.stepsPerSecond), slower.map((r) => r.stepsPerSecond));
  return {
    plain: steady(results.plain),
    keyed: steady(results.keyed),
    keyedRatio: timeRatio(results.keyed, results.plain),
    ...(byHand && { byHand: steady(results["by hand"]), byHandRatio: timeRatio(results.plain, results["by hand"]) }),
  };
}

export interface ThrottleResult {
  runs: number;
  /** The configured rate, starts per second. */
  configured: number;
  /** Starts per second from the first start to the last. */
  observed: number;
  /**
   * Starts per second from the 26th start (half a second into the schedule) to the last. The
   * first starts bunch: those due while the request that stored the 250 events was still
   * committing start together when it commits, which shortens the first-to-last span.
   */
  steady: number;
}

/** `runs` events at once for a function throttled to 50 starts a second, one at a time. */
export async function throttle(topology: Topology, probe: Probe, runs = 250): Promise<ThrottleResult> {
  const tags = Array.from({ length: runs }, (_, n) => `throttle-${n}-${Math.random()}`);
  const finished = probe.finishedAfter(runs);
  await send(topology, tags.map((tag) => ({ name: "bench/throttled", data: { tag } })));
  await finished;
  const starts = tags.map((tag) => probe.firstStepAt.get(tag)!).sort((a, b) => a - b);
  const rate = (from: number) => round((runs - 1 - from) / ((starts.at(-1)! - starts[from]!) / 1000), 2);
  return { runs, configured: 50, observed: rate(0), steady: rate(25) };
}

export interface LatencyResult {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** W3 is taken in rounds, as W3 by hand is (`baselines.ts`), so the two compare. */
export const W3_ROUNDS = 3;

export interface W3Result extends LatencyResult {
  /** The first round alone, right after other work: as a burst of sleeps after other work meets the timer path. */
  first: LatencyResult;
}

/**
 * `rounds` rounds of `runs` runs sleeping together, each after half a second apart, as W3 by hand
 * takes them: the median of the rounds' p50s, p99s and maxima, and the first round's own.
 */
export async function w3(topology: Topology, probe: Probe, runs = 20, rounds = W3_ROUNDS): Promise<W3Result> {
  const each: LatencyResult[] = [];
  for (let r = 0; r < rounds; r++) {
    // Apart from the last round's ends, as by hand.
    await new Promise((resolve) => setTimeout(resolve, 500));
    probe.lateness.length = 0;
    const finished = probe.finishedAfter(runs);
    await send(topology, Array.from({ length: runs }, (_, n) => ({ name: "bench/sleep", data: { n } })));
    await finished;
    // Nothing else runs meanwhile: a round short of its runs' samples would mix rounds.
    if (probe.lateness.length !== runs) throw new Error(`W3 round ${r + 1}: ${probe.lateness.length} lateness samples for ${runs} runs`);
    each.push(latency(probe.lateness));
  }
  const mid = (figure: (result: LatencyResult) => number) => median(each.map(figure));
  return { count: each.reduce((sum, r) => sum + r.count, 0), p50: mid((r) => r.p50), p99: mid((r) => r.p99), max: mid((r) => r.max), first: each[0]! };
}

/**
 * One run sleeping at a time, `samples` times: how late a timer fires on an otherwise idle
 * executor. Beside W3 it tells the timer's own precision from the queueing of many wake-ups
 * coming due together on two shared cores.
 */
export async function w3Alone(topology: Topology, probe: Probe, samples = 5): Promise<LatencyResult> {
  const all: number[] = [];
  for (let i = 0; i < samples; i++) {
    probe.lateness.length = 0;
    const finished = probe.finishedAfter(1);
    await send(topology, { name: "bench/sleep", data: { n: i } });
    await finished;
    all.push(...probe.lateness);
  }
  return latency(all);
}

/**
 * Sequential events, each waited on, so every sample sees an idle executor: from the events
 * API's answer to the first step starting, and (`fromSend`) from the moment the event was sent,
 * which includes storing it. The executor starts a new run's first invocation right after the
 * commit, before its answer is on the wire, so the first figure can be smaller than a round trip.
 */
export async function w4(topology: Topology, probe: Probe, events = 100): Promise<LatencyResult & { fromSend: LatencyResult }> {
  const samples: number[] = [];
  const fromSend: number[] = [];
  for (let i = 0; i < events; i++) {
    const tag = `w4-${i}-${Math.random()}`;
    const finished = probe.finishedAfter(1);
    const sentAt = now();
    await send(topology, { name: "bench/latency", data: { tag } });
    const answeredAt = now();
    await finished;
    samples.push(probe.firstStepAt.get(tag)! - answeredAt);
    fromSend.push(probe.firstStepAt.get(tag)! - sentAt);
  }
  return { ...latency(samples), fromSend: latency(fromSend) };
}

function slope(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((sum, [x]) => sum + x, 0) / n;
  const my = points.reduce((sum, [, y]) => sum + y, 0) / n;
  const sxy = points.reduce((sum, [x, y]) => sum + (x - mx) * (y - my), 0);
  const sxx = points.reduce((sum, [x]) => sum + (x - mx) ** 2, 0);
  return sxx === 0 ? 0 : sxy / sxx;
}

function latency(samples: number[]): LatencyResult {
  return {
    count: samples.length,
    p50: round(percentile(samples, 50)),
    p99: round(percentile(samples, 99)),
    max: round(Math.max(...samples)),
  };
}

export interface SoakResult {
  seconds: number;
  runsPerSecond: number;
  runsCompleted: number;
  /** RSS once warmed up (the first sample after a fifth of the soak), and at the end. */
  rssStartMb: number;
  rssEndMb: number;
  rssMaxMb: number;
  /** Least-squares slope of RSS over the warmed-up samples: growth per minute. */
  slopeMbPerMinute: number;
  samples: Array<{ atSeconds: number; rssMb: number }>;
}

/**
 * A steady load of 5-step runs for `seconds`, RSS sampled every 10 s. "Start" is taken after
 * a warm-up minute's tenth (the first sample once the load runs), so JIT and pools are filled.
 */
export async function soak(topology: Topology, probe: Probe, seconds: number, runsPerSecond = 40): Promise<SoakResult> {
  const samples: SoakResult["samples"] = [];
  const start = performance.now();
  const finishedBefore = probe.finishedCount;
  let sent = 0;
  const tick = setInterval(() => {
    const due = Math.floor(((performance.now() - start) / 1000) * runsPerSecond) - sent;
    if (due <= 0) return;
    sent += due;
    void send(topology, Array.from({ length: due }, (_, n) => ({ name: "bench/burst", data: { n } }))).catch((error: unknown) =>
      console.error(`soak: send failed: ${String(error)}`),
    );
  }, 100);
  const sample = () => samples.push({ atSeconds: Math.round((performance.now() - start) / 1000), rssMb: topology.rssMb() });
  const sampler = setInterval(sample, 10_000);
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  clearInterval(tick);
  clearInterval(sampler);
  sample();
  // Let the last runs drain, so "completed" counts the whole load.
  const drainUntil = performance.now() + 60_000;
  while (probe.finishedCount - finishedBefore < sent && performance.now() < drainUntil) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  // The first fifth warms up (JIT, pools, V8 heap sizing); growth is judged on the rest.
  const warm = samples.filter((s) => s.atSeconds >= seconds / 5);
  const rss = warm.map((s) => s.rssMb);
  return {
    seconds,
    runsPerSecond,
    runsCompleted: probe.finishedCount - finishedBefore,
    rssStartMb: rss[0]!,
    rssEndMb: rss.at(-1)!,
    rssMaxMb: Math.max(...rss),
    slopeMbPerMinute: round(slope(warm.map((s) => [s.atSeconds / 60, s.rssMb])), 2),
    samples,
  };
}
