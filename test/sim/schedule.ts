/**
 * A schedule: the runs to send (a burst of 10 to 50 times the executors' total concurrency, in
 * waves) and the faults to inject while they run: network faults at a rate, executor crashes
 * and stalls at the k-th store call after a moment, Redis flushes, graceful restarts, and each
 * executor's clock skew. All of it is drawn by fast-check from one seed, so a seed replays it.
 */
import fc from "fast-check";
import { runPlans, type RunPlan } from "./program.ts";

export const EXECUTORS = 2;
export const CONCURRENCY = 2;
/** Longer than any stall is not: a stalled executor's leases run out and its jobs move on. */
export const LEASE_MS = 1_500;

export interface FaultPlan {
  /** Chance that an invocation meets a network fault, while the fault window lasts. */
  networkRate: number;
  windowMs: number;
  crashes: Array<{ atMs: number; executor: number; afterCalls: number }>;
  stalls: Array<{ atMs: number; executor: number; afterCalls: number; forMs: number }>;
  flushes: number[];
  restarts: Array<{ atMs: number; executor: number }>;
  /** Per executor: how far its clock is off. */
  skewMs: number[];
  /**
   * A deploy of the app's next version (at its own URL) during the window, and later the
   * deletion of the first version's deployment, which then answers 404 or refuses connections:
   * its runs must move to the new one and end all the same.
   */
  redeploy: { atMs: number; deleteAfterMs: number; deletedAs: "404" | "refuse" } | null;
}

export interface Schedule {
  seed: number;
  index: number;
  runs: RunPlan[];
  waves: number;
  faults: FaultPlan;
}

function faultPlan(windowMs: number, everyFault: boolean): fc.Arbitrary<FaultPlan> {
  const at = fc.integer({ min: 100, max: windowMs });
  const executor = fc.integer({ min: 0, max: EXECUTORS - 1 });
  const atLeast = everyFault ? 1 : 0;
  const redeploy = fc.record({ atMs: at, deleteAfterMs: fc.integer({ min: 0, max: windowMs }), deletedAs: fc.constantFrom("404" as const, "refuse" as const) });
  return fc.record({
    networkRate: everyFault ? fc.constantFrom(0.15, 0.3) : fc.constantFrom(0, 0.05, 0.15, 0.3),
    windowMs: fc.constant(windowMs),
    crashes: fc.array(fc.record({ atMs: at, executor, afterCalls: fc.integer({ min: 1, max: 60 }) }), { minLength: atLeast, maxLength: 2 }),
    stalls: fc.array(fc.record({ atMs: at, executor, afterCalls: fc.integer({ min: 1, max: 60 }), forMs: fc.integer({ min: LEASE_MS + 300, max: LEASE_MS * 2 }) }), { minLength: atLeast, maxLength: 1 }),
    flushes: fc.array(at, { minLength: atLeast, maxLength: 2 }),
    restarts: fc.array(fc.record({ atMs: at, executor }), { minLength: atLeast, maxLength: 1 }),
    skewMs: fc.array(fc.constantFrom(-5_000, 0, 0, 5_000), { minLength: EXECUTORS, maxLength: EXECUTORS }),
    redeploy: everyFault ? redeploy : fc.option(redeploy, { nil: null, freq: 2 }),
  });
}

/**
 * Schedule number `index`, drawn from `seed`. `scale` shrinks the burst for quick runs (1 = 10
 * to 50 times the concurrency); `everyFault` makes each schedule include every kind of fault.
 */
export function drawSchedule(seed: number, index: number, scale = 1, everyFault = false): Schedule {
  const total = EXECUTORS * CONCURRENCY;
  const arbitrary = fc
    .record({ multiple: fc.integer({ min: 10, max: 50 }), waves: fc.integer({ min: 1, max: 3 }), faults: faultPlan(3_000, everyFault) })
    .chain(({ multiple, waves, faults }) =>
      runPlans(Math.max(4, Math.round(multiple * total * scale)), index).map((runs) => ({ seed, index, runs, waves, faults })),
    );
  const [schedule] = fc.sample(arbitrary, { seed, numRuns: 1 });
  return schedule!;
}
