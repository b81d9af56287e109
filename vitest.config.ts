import { defineConfig } from "vitest/config";

// Four projects: `main` (unit, contract and end-to-end suites, two files at a time), `system`
// (the `stepwise` command run as a user runs it, under bursts, and pages in a real browser),
// `sim` (a slice of the fault simulation) and `chaos` (several executor processes, killed, and
// services restarted). The last three run one file at a time each, after `main` so their load
// does not skew it: `system` beside `sim` then `chaos` (scripts/test-after-main.mjs), since
// chaos mostly waits and each lane alone left a core idle. `npm test` runs all four.
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
        test: { name: "system", include: ["test/system/**/*.test.ts", "test/browser/**/*.test.ts"], fileParallelism: false, maxWorkers: 1 },
      },
      {
        extends: true,
        test: { name: "sim", include: ["test/sim/**/*.test.ts"], fileParallelism: false, maxWorkers: 1 },
      },
      {
        extends: true,
        test: { name: "chaos", include: ["test/chaos/**/*.test.ts"], fileParallelism: false, maxWorkers: 1 },
      },
    ],
  },
});
