/**
 * Cron ticks as the store keeps them, driven by `Executor.drain` (what a Worker's alarm does)
 * on every store: ticks missed while nothing ran, executors racing for one tick, and a sync
 * that keeps, replaces or drops a function's ticks.
 */
import { CRON_EVENT, DEV_SIGNING_KEY } from "@stepwise/protocol";
import { Stepwise, type AnyStepwiseFunction } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/fetch";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { cronEventId, cronJobRunId, Executor, silentLogger, type Store } from "../src/index.ts";
import { openStore, STORE_KINDS } from "../../../test/support/stack.ts";

const APP_URL = "http://app.test/api/durable";
const EVERY_SECOND = "* * * * * *";
const client = new Stepwise({ id: "ticks", dev: true });
const fnWith = (cron: string | undefined) =>
  client.createFunction({ id: "tick", triggers: cron ? [{ cron }] : [{ event: "ticks/manual" }] }, async ({ event }) => event.data);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/**
 * Waits until a sync can finish well inside the current second, and returns the next whole
 * second: the first tick of an every-second pattern synced now.
 */
async function clearOfBoundary(): Promise<Date> {
  const untilNext = 1_000 - (Date.now() % 1_000);
  if (untilNext < 500) await sleep(untilNext + 20);
  return new Date(Math.floor(Date.now() / 1_000) * 1_000 + 1_000);
}

describe.each(STORE_KINDS)("cron ticks on %s", (kind) => {
  let store: Store;
  let cleanup: () => Promise<void>;
  let handler: (request: Request) => Promise<Response>;

  const executor = () =>
    new Executor({ store, signingKey: DEV_SIGNING_KEY, log: silentLogger, registryRefreshMs: 0, fetch: (input, init) => handler(new Request(input, init)) });
  async function sync(fn: AnyStepwiseFunction) {
    handler = serve({ client, functions: [fn] });
    await executor().syncApp(await (await handler(new Request(APP_URL))).json());
  }
  beforeEach(async () => {
    ({ store, cleanup } = await openStore(kind));
    await store.migrate();
  });
  afterEach(async () => {
    await store.close();
    await cleanup();
  });

  it("a tick missed while nothing ran fires once, late; the ticks missed after it are skipped", async () => {
    const first = await clearOfBoundary();
    await sync(fnWith(EVERY_SECOND));
    await sleep(3_200);
    await executor().drain({ budgetMs: 10_000 });
    const [late] = await executor().listRunsForEvent(cronEventId("ticks-tick", EVERY_SECOND, first));
    expect(late).toMatchObject({ status: "completed", output: { cron: EVERY_SECOND, scheduledAt: first.toISOString() } });
    for (let skipped = first.getTime() + 1_000; skipped < Date.now() - 1_000; skipped += 1_000) {
      expect(await executor().listRunsForEvent(cronEventId("ticks-tick", EVERY_SECOND, new Date(skipped)))).toEqual([]);
    }
    // The next tick is queued after now, not in the past.
    const result = await executor().drain({ budgetMs: 10_000 });
    expect(result.nextDueAt!.getTime()).toBeGreaterThan(Date.now() - 1_000);
  });

  it("executors draining at the same tick start one run for it", async () => {
    const tick = await clearOfBoundary();
    await sync(fnWith(EVERY_SECOND));
    await sleep(tick.getTime() - Date.now() + 300);
    const drains = await Promise.all([executor(), executor(), executor()].map((e) => e.drain({ budgetMs: 10_000 })));
    expect(drains.reduce((sum, d) => sum + d.ran, 0)).toBeGreaterThanOrEqual(1);
    const runs = await executor().listRunsForEvent(cronEventId("ticks-tick", EVERY_SECOND, tick));
    expect(runs).toHaveLength(1);
    expect((await store.getEvent(cronEventId("ticks-tick", EVERY_SECOND, tick)))?.name).toBe(CRON_EVENT);
  });

  it("an executor whose registry predates the sync that added a pattern still fires its ticks", async () => {
    await sync(fnWith(undefined));
    // Loaded before the sync below, refreshed only every 5 s (the default), as a long-lived executor is.
    const stale = new Executor({ store, signingKey: DEV_SIGNING_KEY, log: silentLogger, pollMs: 50, fetch: (input, init) => handler(new Request(input, init)) });
    await stale.start();
    try {
      const first = await clearOfBoundary();
      await sync(fnWith(EVERY_SECOND));
      await sleep(first.getTime() - Date.now() + 1_500);
      expect(await executor().listRunsForEvent(cronEventId("ticks-tick", EVERY_SECOND, first))).toHaveLength(1);
      expect(await cronJobs()).toEqual([EVERY_SECOND]);
    } finally {
      await stale.stop();
    }
  });

  it("a tick given back (a failure in the executor, a stop) keeps the time of its tick", async () => {
    const first = await clearOfBoundary();
    await sync(fnWith(EVERY_SECOND));
    await sleep(first.getTime() - Date.now() + 100);
    const [job] = (await store.queue.claim("w1", 10, 30_000)).filter((j) => j.kind === "cron");
    await store.queue.release(job!, "w1", { delayMs: 300, failure: "store hiccup" });
    await sleep(400);
    await executor().drain({ budgetMs: 10_000 });
    const [run] = await executor().listRunsForEvent(cronEventId("ticks-tick", EVERY_SECOND, first));
    expect(run).toMatchObject({ status: "completed", output: { scheduledAt: first.toISOString() } });
  });

  it("a sync keeps a queued tick, replaces it when the pattern changes, and drops it with the trigger", async () => {
    const daily = "0 9 * * *";
    await sync(fnWith(daily));
    await sync(fnWith(daily));
    expect(await cronJobs()).toEqual([daily]);
    await sync(fnWith("0 10 * * *"));
    expect(await cronJobs()).toEqual(["0 10 * * *"]);
    await sync(fnWith(undefined));
    expect(await cronJobs()).toEqual([]);
  });

  /** Patterns with a tick queued for the function, read from the record. */
  async function cronJobs(): Promise<string[]> {
    const rows = await (store as unknown as { client: { query(sql: string, params: unknown[]): Promise<Array<{ step_id: string }>> } }).client.query(
      "SELECT step_id FROM jobs WHERE kind = 'cron' AND run_id = $1 ORDER BY step_id",
      [cronJobRunId("ticks-tick")],
    );
    return rows.map((row) => row.step_id);
  }
});
