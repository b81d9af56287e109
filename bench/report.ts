/** The benchmark's table: each figure, and its ratio to the baselines measured in the same run. */
import type { Baselines } from "./baselines.ts";
import type { LatencyResult, SoakResult, W1Result, W2Result } from "./workloads.ts";

interface TopologyResult {
  w1: W1Result[];
  w2: W2Result;
  w3: LatencyResult;
  w4: LatencyResult;
  soak?: SoakResult;
  rssStartMb: number;
  rssEndMb: number;
}

export function printReport(report: { baselines: Baselines; results: Record<string, unknown>; concurrency?: number }): void {
  const { baselines: b } = report;
  const floor = b.httpMs + b.postgresCommitMs;
  console.log("");
  console.log(`Baselines: loopback HTTP ${b.httpMs.toFixed(3)} ms, Postgres INSERT+COMMIT ${b.postgresCommitMs.toFixed(3)} ms ` +
    `(PGlite ${b.pgliteCommitMs.toFixed(3)} ms), Redis round trip ${b.redisMs.toFixed(3)} ms; HTTP + Postgres = ${floor.toFixed(3)} ms`);
  console.log("");
  const rows: string[][] = [["workload", ...Object.keys(report.results)]];
  const results = Object.values(report.results) as TopologyResult[];
  const cell = (fn: (r: TopologyResult) => string) => results.map(fn);
  const x = (value: number, base: number) => `${(value / base).toFixed(1)}x`;
  rows.push(["W1 50 steps: ms/step (x HTTP+PG)", ...cell((r) => `${r.w1[0]!.perStepMs.toFixed(2)} (${x(r.w1[0]!.perStepMs, floor)})`)]);
  rows.push(["W1 200 steps: ms/step (x HTTP+PG)", ...cell((r) => `${r.w1[1]!.perStepMs.toFixed(2)} (${x(r.w1[1]!.perStepMs, floor)})`)]);
  rows.push(["W1 total 50 / 200 steps (ms)", ...cell((r) => `${r.w1[0]!.totalMs} / ${r.w1[1]!.totalMs}`)]);
  // Throughput as time per step, so it compares with the round trips a step needs.
  rows.push(["W2 steps/s (200 runs x 5)", ...cell((r) => `${r.w2.stepsPerSecond} (${x(1000 / r.w2.stepsPerSecond, floor)})`)]);
  rows.push(["W3 sleep 2s: late p50 / p99 (ms)", ...cell((r) => `${r.w3.p50} / ${r.w3.p99} (${x(r.w3.p50, floor)})`)]);
  rows.push(["W4 event->step p50 / p99 (ms)", ...cell((r) => `${r.w4.p50} / ${r.w4.p99} (${x(r.w4.p50, floor)})`)]);
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
    `executor concurrency ${report.concurrency ?? "16 (the default)"}; (N.Nx) = the figure over one loopback HTTP round trip plus one Postgres ` +
      `commit (${floor.toFixed(3)} ms); for W2 the figure is the time per step, 1000 / steps per second`,
  );
}

/** Every latency-like figure of a topology over each baseline, for the JSON report. */
export function ratios(result: unknown, b: Baselines): Record<string, Record<string, number>> {
  const r = result as TopologyResult;
  const figures: Record<string, number> = {
    w1PerStepMs50: r.w1[0]!.perStepMs,
    w1PerStepMs200: r.w1[1]!.perStepMs,
    w2MsPerStep: 1000 / r.w2.stepsPerSecond,
    w3LateP50Ms: r.w3.p50,
    w3LateP99Ms: r.w3.p99,
    w4P50Ms: r.w4.p50,
    w4P99Ms: r.w4.p99,
  };
  const bases = { http: b.httpMs, postgresCommit: b.postgresCommitMs, redis: b.redisMs, httpPlusPostgres: b.httpMs + b.postgresCommitMs };
  return Object.fromEntries(
    Object.entries(figures).map(([name, value]) => [
      name,
      Object.fromEntries(Object.entries(bases).map(([base, ms]) => [base, Math.round((value / ms) * 100) / 100])),
    ]),
  );
}
