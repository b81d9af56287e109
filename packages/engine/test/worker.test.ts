import { describe, expect, it, vi } from "vitest";
import { silentLogger } from "../src/log.ts";
import type { JobRecord } from "../src/records.ts";
import type { Queue } from "../src/store.ts";
import { Worker } from "../src/worker.ts";

/** A queue whose claim blocks until released, so a notification can land mid-claim. */
function slowQueue() {
  const jobs: JobRecord[] = [];
  let releaseClaim: (() => void) | undefined;
  const queue: Queue = {
    authoritative: true,
    async claim() {
      // What the claim sees is fixed when it starts, as a database statement's snapshot is.
      const seen = jobs.splice(0);
      await new Promise<void>((resolve) => (releaseClaim = resolve));
      return seen;
    },
    async extendLeases() {},
    async release() {},
    async nextDueAt() {
      return null;
    },
    async releaseAllLeases() {},
    async publish() {},
    async forget() {},
    async reconcile() {
      return 0;
    },
  };
  return { queue, jobs, finishClaim: () => releaseClaim?.() };
}

describe("Worker", () => {
  it("does not lose a notification that arrives while it is claiming", async () => {
    vi.useFakeTimers();
    const { queue, jobs, finishClaim } = slowQueue();
    const handled: string[] = [];
    const worker = new Worker({
      queue,
      owner: "w",
      concurrency: 4,
      leaseMs: 30_000,
      pollMs: 60_000,
      log: silentLogger,
      handle: async (job) => (handled.push(job.id), []),
    });
    worker.start();
    await vi.advanceTimersByTimeAsync(0);
    // A job is queued and announced while the first claim is still on its way (and saw nothing).
    const job = { id: "1", kind: "invoke" as const, runId: "r", runAt: new Date(), claims: 1 };
    jobs.push(job);
    worker.notify(job.runAt);
    finishClaim(); // the first claim returns nothing: it started before the job existed
    await vi.advanceTimersByTimeAsync(0);
    finishClaim(); // a second claim happens at once and finds the job
    await vi.advanceTimersByTimeAsync(0);
    // Without the nudge the worker would sleep the whole poll interval (60 s) first.
    expect(handled).toEqual(["1"]);
    const stopping = worker.stop(0);
    finishClaim();
    await vi.advanceTimersByTimeAsync(100);
    await stopping;
    vi.useRealTimers();
  });
});
