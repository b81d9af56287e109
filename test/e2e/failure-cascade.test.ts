/**
 * A failure is announced once, and only to the failed run's own app: a function triggered by
 * `stepwise/function.failed` that fails itself announces nothing (no endless chain of runs),
 * and another app's listener never hears of it (the event carries the run's error and event).
 */
import { FUNCTION_FAILED_EVENT } from "@stepwise/protocol";
import { NonRetriableError, Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startRawApp, type RawApp } from "../support/raw-app.ts";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

let watcherRuns = 0;
const client = new Stepwise({ id: "cascade", dev: true, schemas: { "cascade/go": z.object({}) } });
const doomed = client.createFunction({ id: "doomed", triggers: [{ event: "cascade/go" }], retries: 0 }, async () => {
  throw new NonRetriableError("doomed from the start");
});
// Listens to every failure, its own included, and fails too.
const watcher = client.createFunction({ id: "watcher", triggers: [{ event: FUNCTION_FAILED_EVENT }], retries: 0 }, async () => {
  watcherRuns++;
  throw new NonRetriableError("the watcher fails as well");
});

describe.each(STORE_KINDS)("failure announcements on %s", (store) => {
  let stack: Stack;
  let outsider: RawApp;
  beforeAll(async () => {
    watcherRuns = 0;
    stack = await startStack({ store, client, functions: [doomed, watcher] });
    // Another app listening to every failure.
    outsider = await startRawApp(stack.executor.executor, `outsider-${store}`, [{ id: "listen", triggers: [{ event: FUNCTION_FAILED_EVENT }], retries: 0 }], () => ({
      status: 200,
      body: { type: "completed", output: null },
    }));
  });
  afterAll(async () => {
    await outsider?.close();
    await stack?.close();
  });

  it("a failing failure handler runs once and announces nothing: no chain of failures", async () => {
    const [id] = await stack.send({ name: "cascade/go", data: {} });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("failed");
    const [handler] = await (async () => {
      for (let i = 0; i < 100; i++) {
        const runs = await stack.runsOf(`stepwise:${run.id}:failed`);
        if (runs[0] && ["failed", "completed"].includes(runs[0].status)) return runs;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return stack.runsOf(`stepwise:${run.id}:failed`);
    })();
    expect(handler).toMatchObject({ functionId: "cascade-watcher", status: "failed" });
    // Give a chain the time to start, if there were one.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(await stack.runsOf(`stepwise:${handler!.id}:failed`)).toEqual([]);
    expect(watcherRuns).toBe(1);
    // Nothing of it reached the other app.
    expect(outsider.requests).toEqual([]);
  });
});
