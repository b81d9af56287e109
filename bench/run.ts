/**
 * `npm run bench`: every workload on every topology, with baselines measured in the same run.
 * Prints a table and writes bench/results/latest.json.
 *
 *   npm run bench                       full run (5-minute memory soak on postgres+redis)
 *   npm run bench -- --soak-seconds 30  shorter soak
 *   npm run bench -- --only postgres+redis
 *   npm run bench -- --executor source   the repository's TypeScript through tsx instead of the build
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Recorder, startAppProcess } from "./recorder.ts";
import { measureBaselines, startW2ByHand } from "./baselines.ts";
import { printReport, ratios, type TopologyResult } from "./report.ts";
import { checkTargets } from "./targets.ts";
import { buildExecutor, SOURCE_EXECUTOR, startTopology, TOPOLOGIES, type TopologyName } from "./topologies.ts";
import { soak, throttle, w1, w1Rounds, W1_ROUNDS, w2, w2Steady, W2_REPETITIONS, w3, w3Alone, W3_ROUNDS, w4 } from "./workloads.ts";

const { values } = parseArgs({
  options: {
    "soak-seconds": { type: "string", default: "300" },
    only: { type: "string", multiple: true },
    // Unset: the executor's default, as a user runs it. Set only to explore.
    concurrency: { type: "string" },
    // The executor a user installs is compiled JavaScript; "source" runs the repository's TypeScript through tsx.
    executor: { type: "string", default: "compiled" },
  },
});
const soakSeconds = Number(values["soak-seconds"]);
const concurrency = values.concurrency === undefined ? undefined : Number(values.concurrency);
const topologies = (values.only?.length ? values.only : TOPOLOGIES) as TopologyName[];
if (values.executor !== "compiled" && values.executor !== "source") throw new Error(`--executor must be "compiled" or "source", not ${JSON.stringify(values.executor)}`);

const progress = (line: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);

progress("measuring baselines (loopback HTTP, Postgres commit over TCP and the Neon driver, PGlite commit, Redis round trip)");
const baselines = await measureBaselines();
progress(`baselines: ${JSON.stringify(baselines)}`);

progress(values.executor === "compiled" ? "building the packages: the executor runs compiled, as installed" : "the executor runs from source, through tsx");
const executor = values.executor === "compiled" ? await buildExecutor() : SOURCE_EXECUTOR;

const probe = new Recorder();
const { child: app, url: appUrl } = await startAppProcess(probe);
const results: Record<string, unknown> = {};
// W2 by hand again, in turn with each topology's W2: the baselines' ran minutes before it.
const w2ByHand = await startW2ByHand();
for (const name of topologies) {
  progress(`${name}: starting the executor`);
  const topology = await startTopology(name, appUrl, executor, concurrency);
  try {
    app.send({ type: "executor", url: topology.url });
    const rssStartMb = topology.rssMb();
    await w1(topology, probe, 10); // warm-up: connections, JIT, registry
    await w1(topology, probe, 10, false);
    progress(`${name}: W1 (sequential steps, checkpointed and not: two runs of 1,000 each to warm up, then ${W1_ROUNDS} rounds of 1,000 and 50 in both)`);
    const w1Result = await w1Rounds(topology, probe);
    progress(`${name}: W2 (200 runs x 5 steps at once)`);
    const w2Result = await w2(topology, probe);
    progress(`${name}: W2 once warm, plain, with a concurrency key and by hand in turn (3 more of each to warm up, then the median of ${W2_REPETITIONS})`);
    const { plain: w2SteadyResult, keyed: w2KeyedResult, keyedRatio: w2KeyedRatio, byHand: w2ByHandResult, byHandRatio: w2ByHandRatio } = await w2Steady(topology, probe, 3, W2_REPETITIONS, w2ByHand.burst);
    progress(`${name}: burst of 1,000 runs x 5 steps at once, plain then with a concurrency key`);
    const burstResult = await w2(topology, probe, 1_000);
    const burstKeyedResult = await w2(topology, probe, 1_000, "keyed");
    progress(`${name}: throttle (250 runs at once, throttled to 50 starts a second)`);
    const throttleResult = await throttle(topology, probe);
    progress(`${name}: W3 (20 runs sleeping 2 s, ${W3_ROUNDS} rounds)`);
    const w3Result = await w3(topology, probe, 20);
    progress(`${name}: W3 alone (one run sleeping 2 s, 5 times)`);
    const w3AloneResult = await w3Alone(topology, probe);
    progress(`${name}: W4 (event answered -> first step)`);
    const w4Result = await w4(topology, probe);
    const soakResult =
      name === "postgres+redis" && soakSeconds > 0
        ? (progress(`${name}: memory soak, ${soakSeconds}s of steady load`), await soak(topology, probe, soakSeconds))
        : undefined;
    results[name] = { w1: w1Result.modes, w1PlainOverCheckpointed: w1Result.plainOverCheckpointed, w2: w2Result, w2Steady: w2SteadyResult, w2Keyed: w2KeyedResult, w2KeyedRatio, w2ByHand: w2ByHandResult, w2ByHandRatio, burst: burstResult, burstKeyed: burstKeyedResult, throttle: throttleResult, w3: w3Result, w3Alone: w3AloneResult, w4: w4Result, soak: soakResult, rssStartMb, rssEndMb: topology.rssMb() };
  } finally {
    await topology.stop();
  }
}
await w2ByHand.close();
app.removeAllListeners("exit");
app.disconnect();

const report = {
  at: new Date().toISOString(),
  machine: { cpus: (await import("node:os")).cpus().length, node: process.version },
  concurrency,
  executor: executor.label,
  baselines,
  results,
  ratios: Object.fromEntries(Object.entries(results).map(([name, result]) => [name, ratios(name as TopologyName, result, baselines)])),
  targets: checkTargets(results as Partial<Record<TopologyName, TopologyResult>>, baselines),
};
mkdirSync("bench/results", { recursive: true });
writeFileSync("bench/results/latest.json", `${JSON.stringify(report, null, 2)}\n`);
printReport(report);
progress("wrote bench/results/latest.json");
process.exit(0);
