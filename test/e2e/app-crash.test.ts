/**
 * The app dying in the middle of an invocation, after a checkpoint: the platform in front of it
 * answers the executor's request with an error page, the executor invokes again, and the
 * function goes on from the stored step: a committed step never runs twice. The dead
 * invocation's step, should its process come back to life and checkpoint it late (a frozen
 * serverless instance thawing), is refused and changes nothing, and it runs nothing more.
 */
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { AppDeath } from "../support/dying-app.ts";
import { signal, type Signal } from "../support/signal.ts";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const bodies = new Map<string, number>();
const count = (key: string) => bodies.set(key, (bodies.get(key) ?? 0) + 1).get(key)!;

/** Armed while a test runs: the first attempt of step "b" dies, and waits to be thawed. */
const death = new AppDeath();
let thawed: Signal | undefined;

const client = new Stepwise({ id: "crash", dev: true, schemas: { "crash/chain": z.object({ id: z.string() }) } });
const chain = client.createFunction({ id: "chain", triggers: [{ event: "crash/chain" }], retries: 3 }, async ({ event, step }) => {
  const key = event.data.id;
  const a = await step.run("a", () => (count(`${key}:a`), "a"));
  const b = await step.run("b", async () => {
    if (count(`${key}:b`) > 1) return "b";
    // The process dies here, in the middle of the step: nothing after this line runs until the
    // test thaws it, long after the executor gave up on this invocation.
    death.die();
    await thawed!.happened;
    return "zombie";
  });
  const c = await step.run("c", () => (count(`${key}:c`), "c"));
  return a + b + c;
});

describe.each(STORE_KINDS)("an app that dies mid-invocation, on %s", (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      store: kind,
      client,
      functions: [chain],
      // The platform in front of the app (a gateway, a load balancer) answers for the dead process.
      intercept: death.gateway,
    });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("goes on from the stored step; the thawed invocation's late checkpoint is refused", async () => {
    const key = `${kind}-crash`;
    death.arm();
    thawed = signal();
    const [id] = await stack.send({ name: "crash/chain", data: { id: key } });
    const run = await stack.waitForRun(id!, { timeoutMs: 20_000 });
    expect(run).toMatchObject({ status: "completed", output: "abc" });
    expect([bodies.get(`${key}:a`), bodies.get(`${key}:b`), bodies.get(`${key}:c`)]).toEqual([1, 2, 1]);

    // The dead process comes back: its step ends and its SDK checkpoints it with its old lease.
    const refusals = () => stack.log.lines.filter((line) => line.includes(run.id) && line.includes("checkpoint refused")).length;
    const before = refusals();
    thawed.set();
    const deadline = Date.now() + 10_000;
    while (refusals() === before && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(refusals()).toBe(before + 1);
    const after = await stack.getRun(run.id);
    expect(after.steps.map((s) => [s.id, s.output])).toEqual([
      ["a", "a"],
      ["b", "b"],
      ["c", "c"],
    ]);
    expect(after.output).toBe("abc");
    // Refused, the thawed invocation runs no further step.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(bodies.get(`${key}:c`)).toBe(1);
  }, 30_000);
});
