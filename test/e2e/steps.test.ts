/**
 * Every step tool end to end: the executor and an app over real HTTP, on each store.
 */
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const calls = new Map<string, number>();
const count = (key: string) => calls.set(key, (calls.get(key) ?? 0) + 1).get(key)!;

const client = new Stepwise({
  id: "steps",
  dev: true,
  schemas: {
    "test/sequence": z.object({ n: z.number() }),
    "test/sleep": z.object({ ms: z.number() }),
    "test/wait": z.object({ orderId: z.string(), timeout: z.string() }),
    "test/paid": z.object({ orderId: z.string(), amount: z.number() }),
    "test/wait-if": z.object({ min: z.number() }),
    "test/send": z.object({ tag: z.string() }),
    "test/sent": z.object({ tag: z.string() }),
    "test/parallel": z.object({ tag: z.string() }),
    "test/invoke": z.object({ fail: z.boolean() }),
    "test/child": z.object({ x: z.number(), fail: z.boolean() }),
  },
});

const sequence = client.createFunction({ id: "sequence", triggers: [{ event: "test/sequence" }] }, async ({ event, step }) => {
  const a = await step.run("double", () => event.data.n * 2);
  const b = await step.run("add-one", () => a + 1);
  const again = await step.run("double", () => b * 2); // a repeated name gets its own ID
  return { a, b, again };
});

const sleeper = client.createFunction({ id: "sleeper", triggers: [{ event: "test/sleep" }] }, async ({ event, step }) => {
  const before = await step.run("before", () => Date.now());
  await step.sleep("nap", event.data.ms);
  const after = await step.run("after", () => Date.now());
  await step.sleepUntil("until", new Date(after + 50));
  const last = await step.run("last", () => Date.now());
  return { slept: after - before, untilSlept: last - after };
});

const waiter = client.createFunction({ id: "waiter", triggers: [{ event: "test/wait" }] }, async ({ event, step }) => {
  const paid = await step.waitForEvent("payment", { event: "test/paid", match: "data.orderId", timeout: event.data.timeout });
  return { paid: paid ? paid.data.amount : null };
});

const conditional = client.createFunction({ id: "conditional", triggers: [{ event: "test/wait-if" }] }, async ({ step }) => {
  const big = await step.waitForEvent("big-payment", { event: "test/paid", if: "async.data.amount >= event.data.min", timeout: "10s" });
  return { amount: big?.data.amount ?? null };
});

const sender = client.createFunction({ id: "sender", triggers: [{ event: "test/send" }], retries: 2 }, async ({ event, step }) => {
  const sent = await step.sendEvent("announce", { name: "test/sent", data: { tag: event.data.tag } });
  await step.run("flaky-after-send", () => {
    if (count(`flaky-${event.data.tag}`) === 1) throw new Error("first try fails");
    return "ok";
  });
  return sent;
});

const sentReceiver = client.createFunction({ id: "sent-receiver", triggers: [{ event: "test/sent" }] }, async ({ event }) => ({
  tag: event.data.tag,
}));

const parallel = client.createFunction({ id: "parallel", triggers: [{ event: "test/parallel" }] }, async ({ event, step }) => {
  const [a, b, c] = await Promise.all([
    step.run("a", () => count(`par-a-${event.data.tag}`) && "A"),
    step.run("b", () => count(`par-b-${event.data.tag}`) && "B"),
    step.sleep("c", 50).then(() => "C"),
  ]);
  const after = await step.run("after", () => `${a}${b}${c}`);
  return { after };
});

const child = client.createFunction({ id: "child", triggers: [{ event: "test/child" }], retries: 0 }, async ({ event, step }) => {
  const y = await step.run("square", () => event.data.x * event.data.x);
  if (event.data.fail) throw new Error(`child refused ${event.data.x}`);
  return { y };
});

const parent = client.createFunction({ id: "parent", triggers: [{ event: "test/invoke" }] }, async ({ event, step }) => {
  try {
    const result = await step.invoke("call-child", { function: child, data: { x: 7, fail: event.data.fail } });
    return { ok: result.y };
  } catch (error) {
    return { caught: (error as Error).message };
  }
});

const functions = [sequence, sleeper, waiter, conditional, sender, sentReceiver, parallel, child, parent];

describe.each(STORE_KINDS)("step tools on %s", (store) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store, client, functions });
  });
  afterAll(async () => stack?.close());

  it("step.run memoizes results by ID and gives a repeated name its own ID", async () => {
    const [id] = await stack.send({ name: "test/sequence", data: { n: 5 } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("completed");
    expect(run.output).toEqual({ a: 10, b: 11, again: 22 });
    expect(run.steps.map((s) => [s.id, s.status, s.output])).toEqual([
      ["double", "completed", 10],
      ["add-one", "completed", 11],
      ["double:1", "completed", 22],
    ]);
  });

  it("step.sleep and step.sleepUntil pause the run for at least their time", async () => {
    const [id] = await stack.send({ name: "test/sleep", data: { ms: 300 } });
    const sleeping = await stack.waitForRun(id!, { status: "sleeping" });
    expect(sleeping.steps.find((s) => s.name === "nap")?.status).toBe("sleeping");
    const run = await stack.waitForRun(id!);
    const output = run.output as { slept: number; untilSlept: number };
    expect(run.status).toBe("completed");
    expect(output.slept).toBeGreaterThanOrEqual(300);
    expect(output.untilSlept).toBeGreaterThanOrEqual(50);
  });

  it("step.waitForEvent resolves with the event whose match field equals the trigger's", async () => {
    const [id] = await stack.send({ name: "test/wait", data: { orderId: "o-1", timeout: "10s" } });
    await stack.waitForRun(id!, { status: "waiting" });
    await stack.send({ name: "test/paid", data: { orderId: "o-other", amount: 1 } });
    await stack.send({ name: "test/paid", data: { orderId: "o-1", amount: 42 } });
    const run = await stack.waitForRun(id!);
    expect(run.output).toEqual({ paid: 42 });
  });

  it("step.waitForEvent resolves to null at the timeout", async () => {
    const [id] = await stack.send({ name: "test/wait", data: { orderId: "o-2", timeout: "300ms" } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("completed");
    expect(run.output).toEqual({ paid: null });
  });

  it("step.waitForEvent with `if` skips events for which the expression is false", async () => {
    const [id] = await stack.send({ name: "test/wait-if", data: { min: 100 } });
    await stack.waitForRun(id!, { status: "waiting" });
    await stack.send({ name: "test/paid", data: { orderId: "x", amount: 99 } });
    await stack.send({ name: "test/paid", data: { orderId: "y", amount: 150 } });
    const run = await stack.waitForRun(id!);
    expect(run.output).toEqual({ amount: 150 });
  });

  it("step.sendEvent sends once, even when a later step is retried, with IDs derived from run and step", async () => {
    const tag = `t-${store}`;
    const [id] = await stack.send({ name: "test/send", data: { tag } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("completed");
    expect(calls.get(`flaky-${tag}`)).toBe(2);
    const { ids } = run.output as { ids: string[] };
    expect(ids).toEqual([`stepwise:${run.id}:announce:0`]);
    const received = await stack.waitForRun(ids[0]!, { functionId: "steps-sent-receiver" });
    expect(received.output).toEqual({ tag });
    expect(await stack.runsOf(ids[0]!)).toHaveLength(1);
  });

  it("parallel branches run as separate invocations, each once, and the run resumes when all are done", async () => {
    const tag = `p-${store}`;
    const [id] = await stack.send({ name: "test/parallel", data: { tag } });
    const run = await stack.waitForRun(id!);
    expect(run.output).toEqual({ after: "ABC" });
    expect(calls.get(`par-a-${tag}`)).toBe(1);
    expect(calls.get(`par-b-${tag}`)).toBe(1);
    expect(run.steps.map((s) => s.id)).toEqual(["a", "b", "c", "after"]);
  });

  it("step.invoke resolves to the child run's output", async () => {
    const [id] = await stack.send({ name: "test/invoke", data: { fail: false } });
    const run = await stack.waitForRun(id!, { functionId: "steps-parent" });
    expect(run.output).toEqual({ ok: 49 });
  });

  it("step.invoke throws the child's failure at the await", async () => {
    const [id] = await stack.send({ name: "test/invoke", data: { fail: true } });
    const run = await stack.waitForRun(id!, { functionId: "steps-parent" });
    expect(run.status).toBe("completed");
    expect((run.output as { caught: string }).caught).toContain("child refused 7");
  });
});
