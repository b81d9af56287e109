/**
 * The queue hears only of jobs it knows. A continuation (a run's next invocation, written
 * already leased to the worker that runs it) and the first invocation of a run its executor
 * started in a free lane are never handed to the queue; telling the queue they are done was,
 * with Redis as the queue, one round trip per step for nothing. Each test watches what the
 * queue is told and checks every job it hears is done is one it published, handed out or had
 * given back.
 */
import type { JobRecord } from "@stepwise/engine";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, STORE_KINDS, type Stack } from "../support/stack.ts";

const client = new Stepwise({ id: "queue-notices", dev: true, schemas: { "notices/chain": z.object({}), "notices/nap": z.object({}) } });
// One invocation per step: every step after the first runs as a continuation.
const chain = client.createFunction({ id: "chain", triggers: [{ event: "notices/chain" }], checkpointing: false }, async ({ step }) => {
  let total = 0;
  for (let i = 0; i < 5; i++) total += await step.run(`s${i}`, () => i);
  return total;
});
// A sleep's wake-up is queued like any job: its end must still be told.
const nap = client.createFunction({ id: "nap", triggers: [{ event: "notices/nap" }] }, async ({ step }) => {
  await step.sleep("nap", 200);
  return step.run("after", () => "awake");
});

describe.each(STORE_KINDS)("what the queue is told on %s", (kind) => {
  let stack: Stack;
  const known = new Set<string>();
  const toldDone: string[] = [];
  beforeAll(async () => {
    stack = await startStack({ store: kind, client, functions: [chain, nap] });
    const queue = stack.store.queue;
    const { claim, release, afterCommit } = { claim: queue.claim.bind(queue), release: queue.release.bind(queue), afterCommit: queue.afterCommit.bind(queue) };
    queue.claim = async (owner, limit, leaseMs) => {
      const jobs = await claim(owner, limit, leaseMs);
      for (const job of jobs) known.add(job.id);
      return jobs;
    };
    queue.release = async (job: JobRecord, owner, options) => {
      known.add(job.id);
      return release(job, owner, options);
    };
    queue.afterCommit = async (changes) => {
      for (const job of changes.queued) known.add(job.id);
      toldDone.push(...changes.deleted);
      return afterCommit(changes);
    };
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
  });
  beforeEach(() => {
    toldDone.length = 0;
  });

  it("hears nothing of a chain of continuations, and every run completes", async () => {
    const ids = await stack.send([1, 2, 3].map(() => ({ name: "notices/chain", data: {} })));
    for (const id of ids) expect(await stack.waitForRun(id)).toMatchObject({ status: "completed", output: 10 });
    expect(toldDone.filter((id) => !known.has(id))).toEqual([]);
  });

  it("still hears that a queued wake-up is done", async () => {
    const [id] = await stack.send({ name: "notices/nap", data: {} });
    expect(await stack.waitForRun(id!)).toMatchObject({ status: "completed", output: "awake" });
    expect(toldDone.length).toBeGreaterThan(0);
    expect(toldDone.filter((job) => !known.has(job))).toEqual([]);
  });
});
