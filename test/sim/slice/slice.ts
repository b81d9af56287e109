/**
 * A slice of the fault-injecting simulation (`npm run sim` runs the whole of it): a few seeded
 * schedules on one topology, every promise checked after each. A failure prints the command
 * that replays the schedule. STEPWISE_SIM_SEED picks other schedules than the fixed ones.
 * Each topology's slice is a file of its own, so the three run side by side in their own
 * processes: the simulation mostly waits (on leases, stalls, timers), and its idle check reads
 * its own process's CPU.
 */
import { describe, expect, it } from "vitest";
import { describeTotals, simulate } from "../simulate.ts";
import type { TopologyName } from "../topologies.ts";

const SEED = Number(process.env.STEPWISE_SIM_SEED ?? 20261201);

/** Defines the slice on `topology`, skipped (never under CI=true) when `available` is false. */
export function simulationSlice(topology: TopologyName, available = true): void {
  describe.runIf(available)(`simulation slice on ${topology}`, () => {
    it("keeps every promise through crashes, stalls, lost answers, flushes and bursts", { timeout: 180_000 }, async () => {
      const lines: string[] = [];
      const totals = await simulate({ topology, seed: SEED, schedules: 3, scale: 0.4, everyFault: true, progress: (line) => lines.push(line) });
      console.log([describeTotals(totals), ...lines.filter((line) => line.startsWith("[sim"))].join("\n"));
      expect(totals.violations, lines.join("\n")).toEqual([]);
      expect(totals.runs).toBeGreaterThan(30);
    });
  });
}
