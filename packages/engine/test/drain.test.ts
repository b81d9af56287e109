/**
 * `Executor.drain` with no worker loop, on PGlite and (where the services run) PostgreSQL and
 * PostgreSQL + Redis: the app is served in process (the executor's `fetch` hands it the
 * request), so each drain is exactly what a Worker's request, alarm or cron trigger would do.
 */
import { DEV_SIGNING_KEY } from "@stepwise/protocol";
import { Stepwise } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/fetch";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Executor, silentLogger, type Store } from "../src/index.ts";
import { openStore, STORE_KINDS } from "../../../test/support/stack.ts";

const APP_URL = "http://app.test/api/durable";
const client = new Stepwise({ id: "drain", dev: true });
const chain = client.createFunction({ id: "chain", triggers: [{ event: "test/chain" }] }, async ({ step }) => {
  const a = await step.run("one", () => 1);
  const b = await step.run("two", () => a + 1);
  const c = await step.run("three", () => b + 1);
  return { c };
});
const sleeper = client.createFunction({ id: "sleeper", triggers: [{ event: "test/sleep" }] }, async ({ step }) => {
  await step.run("before", () => "ok");
  await step.sleep("nap", 300);
  return "woke";
});
/** The executor the current suite drains with (the function below cancels its own run through it). */
let current: Executor;
/** Cancelled while its second step runs: that step's answer comes after the cancel and is dropped. */
const cancelsItself = client.createFunction({ id: "cancels-itself", triggers: [{ event: "test/cancel-self" }] }, async ({ step, runId }) => {
  await step.run("one", () => 1);
  await step.run("two", async () => (await current.cancelRun(runId), 2));
  return step.run("three", () => 3);
});
const handler = serve({ client, functions: [chain, sleeper, cancelsItself] });

describe.each(STORE_KINDS)("Executor.drain on %s", (kind) => {
  let store: Store;
  let cleanup: () => Promise<void>;
  let executor: Executor;

  beforeAll(async () => {
    ({ store, cleanup } = await openStore(kind));
    await store.migrate();
    executor = new Executor({
      store,
      signingKey: DEV_SIGNING_KEY,
      log: silentLogger,
      fetch: (input, init) => handler(new Request(input, init)),
    });
    const description = await (await handler(new Request(APP_URL))).json();
    await executor.syncApp(description);
  });

  afterAll(async () => {
    await store.close();
    await cleanup();
  });

  async function send(name: string): Promise<string> {
    const { ids } = await executor.sendEvents({ name, data: {} });
    return ids[0]!;
  }

  async function runOf(eventId: string) {
    const [run] = await executor.listRunsForEvent(eventId);
    return run!;
  }

  it("runs a run to its end in one drain and reports nothing left", async () => {
    const eventId = await send("test/chain");
    const result = await executor.drain({ budgetMs: 10_000 });
    const run = await runOf(eventId);
    expect(run.status).toBe("completed");
    expect(run.output).toEqual({ c: 3 });
    expect(result).toMatchObject({ failed: 0, stoppedEarly: false, nextDueAt: null });
    expect(result.ran).toBeGreaterThanOrEqual(4);
  });

  it("stops at maxJobs, hands the continuation back, and a later drain finishes", async () => {
    const eventId = await send("test/chain");
    const first = await executor.drain({ budgetMs: 10_000, maxJobs: 1 });
    expect(first).toMatchObject({ ran: 1, stoppedEarly: true });
    // The handed-back continuation is due at once and claimable by anyone.
    expect(first.nextDueAt!.getTime()).toBeLessThanOrEqual(Date.now());
    expect((await runOf(eventId)).status).not.toBe("completed");
    await executor.drain({ budgetMs: 10_000 });
    expect((await runOf(eventId)).status).toBe("completed");
  });

  it("never starts more than maxJobs, however many lanes claim at once", async () => {
    const eventIds = [await send("test/chain"), await send("test/chain"), await send("test/chain")];
    const result = await executor.drain({ budgetMs: 10_000, maxJobs: 2, concurrency: 4 });
    expect(result).toMatchObject({ ran: 2, failed: 0, stoppedEarly: true });
    await executor.drain({ budgetMs: 10_000 });
    for (const eventId of eventIds) expect((await runOf(eventId)).status).toBe("completed");
  });

  it("returns at a sleep with the wake-up time, and finishes the run when drained then", async () => {
    const eventId = await send("test/sleep");
    const before = Date.now();
    const result = await executor.drain({ budgetMs: 10_000 });
    expect((await runOf(eventId)).status).toBe("sleeping");
    expect(result.stoppedEarly).toBe(false);
    const due = result.nextDueAt!.getTime();
    expect(due).toBeGreaterThanOrEqual(before + 250);
    expect(due).toBeLessThanOrEqual(Date.now() + 400);
    // Too early: nothing is due, nothing runs.
    expect((await executor.drain({ budgetMs: 1_000 })).ran).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now()) + 20));
    const woke = await executor.drain({ budgetMs: 10_000 });
    expect(woke.nextDueAt).toBeNull();
    const run = await runOf(eventId);
    expect(run.status).toBe("completed");
    expect(run.output).toBe("woke");
  });

  it("counts the invocations that ran to their end, not an answer a cancel dropped", async () => {
    current = executor;
    const eventId = await send("test/cancel-self");
    const result = await executor.drain({ budgetMs: 10_000 });
    expect((await runOf(eventId)).status).toBe("cancelled");
    expect(result).toMatchObject({ ran: 1, failed: 0, stoppedEarly: false });
  });

  it("starts nothing once the budget is spent", async () => {
    const eventId = await send("test/chain");
    const result = await executor.drain({ budgetMs: 0 });
    expect(result).toMatchObject({ ran: 0, stoppedEarly: true });
    expect(result.nextDueAt).not.toBeNull();
    await executor.drain({ budgetMs: 10_000 });
    expect((await runOf(eventId)).status).toBe("completed");
  });
});
