/**
 * `npm run sim`: the fault-injecting simulation from the command line.
 *
 *   npm run sim                                   2,000 runs on each topology, a random seed
 *   npm run sim -- --runs 20000                   20,000 runs on each topology
 *   npm run sim -- --topology postgres --seed 42  one topology, a fixed seed
 *   npm run sim -- --topology pglite --seed 42 --from 7 --schedules 1   replay schedule 7
 *
 * Exits 1 when any promise broke; each broken one is printed with the command that replays it.
 */
import { parseArgs } from "node:util";
import { describeTotals, simulate, type SimTotals } from "./simulate.ts";
import { TOPOLOGIES, type TopologyName } from "./topologies.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "2000" },
    topology: { type: "string", multiple: true },
    seed: { type: "string" },
    from: { type: "string", default: "0" },
    schedules: { type: "string" },
    scale: { type: "string", default: "1" },
    "every-fault": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});
const topologies = (values.topology?.length ? values.topology : TOPOLOGIES) as TopologyName[];
for (const name of topologies) if (!TOPOLOGIES.includes(name)) throw new Error(`--topology must be one of ${TOPOLOGIES.join(", ")}, got "${name}"`);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const log = (line: string) => console.log(`${new Date().toISOString().slice(11, 19)} ${line}`);

log(`seed ${seed}; ${values.schedules ? `${values.schedules} schedule(s)` : `${values.runs} runs`} on ${topologies.join(", ")}`);
const all: SimTotals[] = [];
for (const topology of topologies) {
  all.push(
    await simulate({
      topology,
      seed,
      from: Number(values.from),
      runs: values.schedules ? undefined : Number(values.runs),
      schedules: values.schedules ? Number(values.schedules) : undefined,
      scale: Number(values.scale),
      everyFault: values["every-fault"],
      progress: log,
    }),
  );
}
console.log(values.json ? JSON.stringify({ seed, totals: all }, null, 2) : `\nseed ${seed}\n${all.map(describeTotals).join("\n")}`);
const broken = all.flatMap((t) => t.violations);
for (const violation of broken) console.log(`replay: ${violation.replay}`);
process.exit(broken.length > 0 ? 1 : 0);
