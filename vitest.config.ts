import { defineConfig } from "vitest/config";

// Three projects: `main` (unit, contract and end-to-end suites, two files at a time), `system`
// (the `stepwise` command run as a user runs it, under bursts, a slice of the simulation, and
// the dashboard in a real browser) and `chaos` (several executor processes, killed, and
// services restarted). The last two run one file at a time each, after `main` so their load
// does not skew it, and beside each other (scripts/test-after-main.mjs): chaos mostly waits.
// `npm test` runs all three.
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
          include: ["packages/*/test/**/*.test.ts", "apps/*/test/**/*.test.ts", "test/e2e/**/*.test.ts", "test/workers/**/*.test.ts"],
          maxWorkers: 2,
        },
      },
      {
        extends: true,
        test: { name: "system", include: ["test/system/**/*.test.ts", "test/sim/**/*.test.ts", "test/browser/**/*.test.ts"], fileParallelism: false, maxWorkers: 1 },
      },
      {
        extends: true,
        test: { name: "chaos", include: ["test/chaos/**/*.test.ts"], fileParallelism: false, maxWorkers: 1 },
      },
    ],
  },
});
