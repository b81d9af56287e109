/**
 * A slice of the fault-injecting simulation (`npm run sim` runs the whole of it): a few seeded
 * schedules on each topology, every promise checked after each. A failure prints the command
 * that replays the schedule. STEPWISE_SIM_SEED picks other schedules than the fixed ones.
 */
import { describe, expect, it } from "vitest";
import { postgresAvailable } from "../support/postgres.ts";
import { redisAvailable } from "../support/redis.ts";
import { describeTotals, simulate } from "./simulate.ts";
import type { TopologyName } from "./topologies.ts";

const SEED = Number(process.env.STEPWISE_SIM_SEED ?? 20261201);
const topologies: TopologyName[] = ["pglite", ...(postgresAvailable ? (["postgres"] as const) : []), ...(postgresAvailable && redisAvailable ? (["postgres+redis"] as const) : [])];

describe.each(topologies)("simulation slice on %s", (topology) => {
  it("keeps every promise through crashes, stalls, lost answers, flushes and bursts", { timeout: 180_000 }, async () => {
    const lines: string[] = [];
    const totals = await simulate({ topology, seed: SEED, schedules: 3, scale: 0.4, everyFault: true, progress: (line) => lines.push(line) });
    console.log(describeTotals(totals));
    expect(totals.violations, lines.join("\n")).toEqual([]);
    expect(totals.runs).toBeGreaterThan(30);
  });
});
