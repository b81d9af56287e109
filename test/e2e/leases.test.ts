/**
 * Leases with the queue in Redis: the lease that fences a commit is the record's, so a Redis
 * that loses its own (flushed while a step runs) cannot hand the running job to another
 * executor, and the step's body runs once.
 */
import { Executor } from "@stepwise/engine";
import { DEV_SIGNING_KEY } from "@stepwise/protocol";
import { Stepwise } from "@stepwise/sdk";
import { Redis } from "@upstash/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { memoryLogger, startStack, STORE_KINDS, type Stack } from "../support/stack.ts";

let bodies = 0;
const client = new Stepwise({ id: "leases", dev: true, schemas: { "leases/slow": z.object({}) } });
// Parallel branches: each is a job of its own. The first goes straight to the executor that
// committed it (as a run's first invocation and its continuations do, never entering Redis);
// the second is claimed through Redis, which is where this test needs it.
const slow = client.createFunction({ id: "slow", triggers: [{ event: "leases/slow" }] }, async ({ step }) => {
  await Promise.all([
    step.run("quick", () => "quick"),
    step.run("slow", async () => {
      bodies++;
      await new Promise((resolve) => setTimeout(resolve, 8_000));
      return "done";
    }),
  ]);
  return "finished";
});
// Sending an event reaches beyond the run's own rows, so each answer commits in a transaction.
const sender = client.createFunction({ id: "sender", triggers: [{ event: "leases/send" }] }, async ({ step }) => {
  await step.sendEvent("note", { name: "leases/noted", data: {} });
  await step.sendEvent("note-again", { name: "leases/noted", data: {} });
  return "sent";
});

describe.runIf(STORE_KINDS.includes("postgres+redis"))("leases with the queue in Redis", () => {
  let stack: Stack;
  let second: Executor;
  beforeAll(async () => {
    stack = await startStack({ store: "postgres+redis", client, functions: [slow, sender], executor: { maintenanceMs: 300, pollMs: 50 } });
    // A second executor process on the same stores (its own worker name, so its own leases).
    second = new Executor({ store: stack.store, signingKey: DEV_SIGNING_KEY, log: memoryLogger(), pollMs: 50, maintenanceMs: 300, registryRefreshMs: 0 });
    await second.start();
  }, 60_000);
  afterAll(async () => {
    await second?.stop(0);
    await stack?.close();
  });

  it("a Redis flush while a step runs does not hand its job to another executor: the body runs once", { timeout: 40_000 }, async () => {
    const [id] = await stack.send({ name: "leases/slow", data: {} });
    // Past reconcile's grace period (5 s), so a job Redis does not know counts as lost.
    await new Promise((resolve) => setTimeout(resolve, 5_500));
    expect(bodies).toBe(1);
    const redis = new Redis({ url: stack.redis!.url, token: stack.redis!.token });
    const keys = await redis.keys(`${stack.redis!.prefix}*`);
    expect(keys.length).toBeGreaterThan(0);
    await redis.del(...keys);
    const run = await stack.waitForRun(id!, { timeoutMs: 20_000 });
    expect(run.output).toBe("finished");
    expect(bodies).toBe(1);
  });

  it("a job finished in a transaction leaves Redis too, so idle executors are not handed it again", { timeout: 30_000 }, async () => {
    const [id] = await stack.send({ name: "leases/send", data: {} });
    const run = await stack.waitForRun(id!, { timeoutMs: 20_000 });
    expect(run.output).toBe("sent");
    // With nothing left in the record, Redis holds nothing either (not even as leased until its lease runs out).
    const sql = (stack.store as unknown as { client: { query(text: string): Promise<Array<{ n: number | string }>> } }).client;
    expect(Number((await sql.query("SELECT count(*) AS n FROM jobs"))[0]!.n)).toBe(0);
    const redis = new Redis({ url: stack.redis!.url, token: stack.redis!.token });
    expect(await redis.zcard(`${stack.redis!.prefix}due`)).toBe(0);
    expect(await redis.zcard(`${stack.redis!.prefix}leased`)).toBe(0);
  });
});
