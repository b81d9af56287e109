/**
 * The code of a `step.run` receives `{ idempotencyKey, attempt }`, so a payment or an email API
 * can recognise a repeat: the key is the same on every execution of the step in its run (a
 * retry after the step threw, a repeat after the app died mid-step) and differs between steps
 * and runs; the attempt counts the retries the executor scheduled, from 0.
 */
import { createHash } from "node:crypto";
import { Stepwise, type StepRunContext } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { AppDeath } from "../support/dying-app.ts";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

/** Every execution of a step's code, by the test's own key for it. */
const executions = new Map<string, StepRunContext[]>();
const record = (key: string, context: StepRunContext) => executions.set(key, [...(executions.get(key) ?? []), context]).get(key)!.length;

/** Armed while a test runs: the first execution of "ship" dies with its app. */
const death = new AppDeath();

const client = new Stepwise({ id: "idem-keys", dev: true, schemas: { "idem/order": z.object({ id: z.string() }) } });
const order = client.createFunction({ id: "order", triggers: [{ event: "idem/order" }], retries: 3 }, async ({ event, step }) => {
  const id = event.data.id;
  // A card charge that fails twice (a provider's 503), then goes through.
  await step.run("charge", (context) => {
    if (record(`${id}:charge`, context) <= 2) throw new Error("the payment provider answered 503");
    return "charged";
  });
  // The same name twice: two steps ("email", "email:1"), two keys.
  for (const kind of ["receipt", "invoice"]) await step.run("email", (context) => void record(`${id}:email:${kind}`, context));
  await step.run("ship", async (context) => {
    if (record(`${id}:ship`, context) === 1 && death.armed) {
      death.die();
      await new Promise(() => {}); // the process is gone: this execution never ends
    }
  });
  return "done";
});

describe.each(STORE_KINDS)("the idempotency key and attempt of a step, on %s", (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      store: kind,
      client,
      functions: [order],
      // The platform in front of the app answers for the process that died in "ship".
      intercept: death.gateway,
    });
  }, 60_000);
  afterAll(async () => stack?.close());

  const keyOf = (runId: string, stepId: string) => `stepwise-${createHash("sha256").update(`${runId}\u0000${stepId}`).digest("hex")}`;

  it("keeps one key per step across retries and a crash mid-step, counts the retries, and gives every step and run its own", async () => {
    const ids = [`${kind}-1`, `${kind}-2`];
    death.arm();
    const eventIds = await stack.send(ids.map((id) => ({ name: "idem/order", data: { id } })));
    const runs = await Promise.all(eventIds.map((eventId) => stack.waitForRun(eventId, { timeoutMs: 20_000 })));
    for (const run of runs) expect(run).toMatchObject({ status: "completed", output: "done" });

    const [first] = runs;
    const firstId = ids[0]!;
    // Three executions of "charge": attempts 0, 1 and 2, one key, derived as documented.
    expect(executions.get(`${firstId}:charge`)).toEqual([0, 1, 2].map((attempt) => ({ idempotencyKey: keyOf(first!.id, "charge"), attempt })));
    // "ship" ran twice in the run whose app died in it: the same key, and the execution the
    // executor never heard of is not counted as an attempt.
    const shipped = ids.map((id) => executions.get(`${id}:ship`)!);
    const crashed = shipped.find((list) => list.length === 2)!;
    expect(crashed).toBeDefined();
    expect(crashed[1]).toEqual(crashed[0]);
    expect(crashed[0]!.attempt).toBe(0);

    // Every step of every run has its own key; repeated names are distinct steps.
    const keys = ids.flatMap((id) => ["charge", "email:receipt", "email:invoice", "ship"].map((step) => executions.get(`${id}:${step}`)![0]!.idempotencyKey));
    expect(new Set(keys).size).toBe(keys.length);
    for (const key of keys) expect(key).toMatch(/^stepwise-[0-9a-f]{64}$/);
    expect(executions.get(`${firstId}:email:invoice`)![0]!.idempotencyKey).toBe(keyOf(first!.id, "email:1"));
  });
});
