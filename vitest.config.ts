import { defineConfig } from "vitest/config";

// Five projects: `main` (unit, contract and end-to-end suites, three files at a time: its
// files wait on timers and Postgres as much as they compute, so three on two cores took 287 s
// against 373 s for two, in the same hour), `system` (the `stepwise` command run as a user runs
// it, under bursts, and pages in a real browser), `sim` (a slice of the fault simulation),
// `chaos` (several executor processes, killed, and services restarted) and `commands` (suites
// that drive `stepwise` and `wrangler dev` as processes, one at a time). All but `main` run after
// it, so their load does not skew it, in two lanes side by side (scripts/test-after-main.mjs):
// system, and chaos then commands, which mostly wait on processes; the simulation, whose
// promises include timings, runs once both lanes are done. `npm test` runs all five.
/** Suites of processes run as users run them: the command line, a SIGKILLed `stepwise dev`, the Worker executor under wrangler. */
const COMMANDS = ["test/e2e/cli.test.ts", "test/e2e/crash.test.ts", "test/workers/**/*.test.ts"];

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    projects: [
      {
        extends: true,
        test: {
          name: "main",
          include: ["packages/*/test/**/*.test.ts", "apps/*/test/**/*.test.ts", "test/e2e/**/*.test.ts"],
          exclude: COMMANDS,
          maxWorkers: 3,
        },
      },
      {
        extends: true,
        test: { name: "commands", include: COMMANDS, fileParallelism: false, maxWorkers: 1 },
      },
      {
        extends: true,
        test: { name: "system", include: ["test/system/**/*.test.ts", "test/browser/**/*.test.ts"], fileParallelism: false, maxWorkers: 1 },
      },
      {
        extends: true,
        // One file per topology, side by side: the simulation mostly waits.
        test: { name: "sim", include: ["test/sim/**/*.test.ts"], maxWorkers: 3 },
      },
      {
        extends: true,
        test: { name: "chaos", include: ["test/chaos/**/*.test.ts"], fileParallelism: false, maxWorkers: 1 },
      },
    ],
  },
});
