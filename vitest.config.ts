import { defineConfig } from "vitest/config";

// Two projects: `main` (unit, contract and end-to-end suites, two files at a time) and `chaos`
// (suites that run several executor processes, kill them and restart services: one file at a
// time, after `main`, so their load does not skew the others). `npm test` runs both.
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
        test: { name: "chaos", include: ["test/chaos/**/*.test.ts"], fileParallelism: false, maxWorkers: 1 },
      },
    ],
  },
});
