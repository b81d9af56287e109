/**
 * When things go wrong: retries with backoff, NonRetriableError, RetryAfterError, onFailure,
 * cancellation (cancelOn and the API) and a function whose steps changed under a live run.
 */
import { derivedEventId } from "@stepwise/protocol";
import { NonRetriableError, RetryAfterError, Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const attempts = new Map<string, number[]>();
const record = (key: string) => {
  const list = attempts.get(key) ?? [];
  list.push(Date.now());
  attempts.set(key, list);
  return list.length;
};
const failures = new Map<string, { message: string; orderId: string; runId: string }>();
const variant = { stepName: "original" };

const Key = z.object({ key: z.string() });
const client = new Stepwise({
  id: "fail",
  dev: true,
  schemas: {
    "test/flaky": Key,
    "test/own-policies": Key,
    "test/always-fails": z.object({ key: z.string(), catch: z.boolean() }),
    "test/non-retriable": Key,
    "test/retry-after": Key,
    "test/body-throws": Key,
    "test/order": z.object({ orderId: z.string() }),
    "test/order-cancelled": z.object({ orderId: z.string() }),
    "test/changing": Key,
  },
});

const flaky = client.createFunction(
  { id: "flaky", triggers: [{ event: "test/flaky" }], retries: 3, backoff: { initialMs: 100, factor: 2, maxMs: 1_000 } },
  async ({ event, step }) =>
    step.run("unstable", () => {
      if (record(event.data.key) < 3) throw new Error("not yet");
      return "finally";
    }),
);

// The function retries nothing; its steps say otherwise, each for itself.
const ownPolicies = client.createFunction({ id: "own-policies", triggers: [{ event: "test/own-policies" }], retries: 0 }, async ({ event, step }) => {
  const charged = await step.run({ id: "charge", retries: 3, backoff: { initialMs: 200, factor: 1 } }, () => {
    if (record(`${event.data.key}:charge`) < 3) throw new Error("gateway timeout");
    return "charged";
  });
  const emailed = await step
    .run({ id: "email", retries: 0 }, () => {
      record(`${event.data.key}:email`);
      throw new Error("mailbox full");
    })
    .catch((error: Error) => `gave up: ${error.message}`);
  return { charged, emailed };
});

const alwaysFails = client.createFunction(
  { id: "always-fails", triggers: [{ event: "test/always-fails" }], retries: 2 },
  async ({ event, step }) => {
    try {
      await step.run("doomed", () => {
        record(event.data.key);
        throw new TypeError("card declined");
      });
    } catch (error) {
      if (event.data.catch) return { caught: `${(error as Error).name}: ${(error as Error).message}` };
      throw error;
    }
    return "unreachable";
  },
);

const nonRetriable = client.createFunction({ id: "non-retriable", triggers: [{ event: "test/non-retriable" }], retries: 3 }, async ({ event, step }) => {
  await step.run("validate", () => {
    record(event.data.key);
    throw new NonRetriableError("order is invalid");
  });
});

const retryAfter = client.createFunction({ id: "retry-after", triggers: [{ event: "test/retry-after" }], retries: 3 }, async ({ event, step }) =>
  step.run("rate-limited", () => {
    if (record(event.data.key) === 1) throw new RetryAfterError("rate limited", 400);
    return "served";
  }),
);

const bodyThrows = client.createFunction({ id: "body-throws", triggers: [{ event: "test/body-throws" }], retries: 1 }, async ({ event, step, attempt }) => {
  const first = await step.run("first", () => "done");
  if (record(event.data.key) === 1) throw new Error(`body failed on attempt ${attempt}`);
  return { first, attempt };
});

const order = client.createFunction(
  {
    id: "order",
    triggers: [{ event: "test/order" }],
    retries: 0,
    cancelOn: [{ event: "test/order-cancelled", match: "data.orderId" }],
    onFailure: async ({ error, event, runId }) => {
      failures.set(event.data.orderId, { message: error.message, orderId: event.data.orderId, runId });
    },
  },
  async ({ event, step }) => {
    await step.run("check", () => {
      if (event.data.orderId.startsWith("bad")) throw new Error(`order ${event.data.orderId} is bad`);
      return true;
    });
    await step.sleep("long-sleep", "30s");
    return "shipped";
  },
);

const changing = client.createFunction({ id: "changing", triggers: [{ event: "test/changing" }] }, async ({ step }) => {
  await step.run(variant.stepName, () => 1);
  await step.sleep("pause", 300);
  return step.run("end", () => 2);
});

const functions = [flaky, ownPolicies, alwaysFails, nonRetriable, retryAfter, bodyThrows, order, changing];

describe.each(STORE_KINDS)("failures on %s", (store) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store, client, functions });
  });
  afterAll(async () => stack?.close());

  it("retries a failing step with exponential backoff until it succeeds", async () => {
    const key = `flaky-${store}`;
    const [id] = await stack.send({ name: "test/flaky", data: { key } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("completed");
    expect(run.output).toBe("finally");
    expect(run.steps[0]?.attempts).toBe(3);
    const [t1, t2, t3] = attempts.get(key)!;
    // Equal jitter: the n-th retry waits between half and all of 100ms * 2^n.
    expect(t2! - t1!).toBeGreaterThanOrEqual(50);
    expect(t3! - t2!).toBeGreaterThanOrEqual(100);
    expect(stack.log.lines.some((line) => line.includes('step "unstable" attempt 1 of 4 failed: Error: not yet'))).toBe(true);
  });

  it("a step's own retries and backoff override the function's, for that step alone", async () => {
    const key = `own-${store}`;
    const [id] = await stack.send({ name: "test/own-policies", data: { key } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("completed");
    expect(run.output).toEqual({ charged: "charged", emailed: "gave up: mailbox full" });
    expect(run.steps.find((s) => s.name === "charge")).toMatchObject({ status: "completed", attempts: 3 });
    expect(run.steps.find((s) => s.name === "email")).toMatchObject({ status: "failed", attempts: 1 });
    // factor 1: every retry waits between half and all of the step's 200 ms (the stack's default is 20 ms).
    const [t1, t2, t3] = attempts.get(`${key}:charge`)!;
    expect(t2! - t1!).toBeGreaterThanOrEqual(100);
    expect(t3! - t2!).toBeGreaterThanOrEqual(100);
    expect(attempts.get(`${key}:email`)).toHaveLength(1);
    expect(stack.log.lines.some((line) => line.includes('step "charge" attempt 1 of 4 failed: Error: gateway timeout'))).toBe(true);
  });

  it("after the last retry the step's error is thrown at the await, where it can be caught", async () => {
    const key = `caught-${store}`;
    const [id] = await stack.send({ name: "test/always-fails", data: { key, catch: true } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("completed");
    expect(run.output).toEqual({ caught: "TypeError: card declined" });
    expect(attempts.get(key)).toHaveLength(3);
    expect(run.steps[0]).toMatchObject({ status: "failed", attempts: 3, error: { name: "TypeError", message: "card declined" } });
  });

  it("an uncaught step error fails the run with the step's error", async () => {
    const key = `uncaught-${store}`;
    const [id] = await stack.send({ name: "test/always-fails", data: { key, catch: false } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("failed");
    expect(run.error?.message).toContain("card declined");
    expect(attempts.get(key)).toHaveLength(3);
  });

  it("NonRetriableError fails the run at once", async () => {
    const key = `nr-${store}`;
    const [id] = await stack.send({ name: "test/non-retriable", data: { key } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("failed");
    expect(run.error?.message).toContain("order is invalid");
    expect(attempts.get(key)).toHaveLength(1);
  });

  it("RetryAfterError sets when the next attempt runs", async () => {
    const key = `ra-${store}`;
    const [id] = await stack.send({ name: "test/retry-after", data: { key } });
    const run = await stack.waitForRun(id!);
    expect(run.output).toBe("served");
    const [t1, t2] = attempts.get(key)!;
    expect(t2! - t1!).toBeGreaterThanOrEqual(380); // the stack's default backoff is 20ms
  });

  it("an error thrown outside steps retries the function body, not the finished steps", async () => {
    const key = `body-${store}`;
    const [id] = await stack.send({ name: "test/body-throws", data: { key } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("completed");
    expect(run.output).toEqual({ first: "done", attempt: 1 });
    expect(run.steps).toHaveLength(1);
  });

  it("onFailure runs once after the run failed for good, with the error and the original event", async () => {
    const orderId = `bad-${store}`;
    const [id] = await stack.send({ name: "test/order", data: { orderId } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("failed");
    const handler = await stack.waitForRun(derivedEventId(run.id, "failed"), { functionId: "fail-order-failure" });
    expect(handler.status).toBe("completed");
    expect(failures.get(orderId)).toEqual({ orderId, runId: run.id, message: expect.stringContaining(`order ${orderId} is bad`) });
    expect(await stack.runsOf(derivedEventId(run.id, "failed"))).toHaveLength(1);
  });

  it("cancelOn cancels the run whose match field equals the cancelling event's, and no other", async () => {
    const [keep] = await stack.send({ name: "test/order", data: { orderId: `keep-${store}` } });
    const [drop] = await stack.send({ name: "test/order", data: { orderId: `drop-${store}` } });
    await stack.waitForRun(keep!, { status: "sleeping" });
    await stack.waitForRun(drop!, { status: "sleeping" });
    await stack.send({ name: "test/order-cancelled", data: { orderId: `drop-${store}` } });
    const cancelled = await stack.waitForRun(drop!);
    expect(cancelled.status).toBe("cancelled");
    expect(cancelled.steps.find((s) => s.name === "long-sleep")?.status).toBe("cancelled");
    expect((await stack.runsOf(keep!))[0]?.status).toBe("sleeping");
    expect(failures.has(`drop-${store}`)).toBe(false);
  });

  it("POST /api/runs/:id/cancel cancels a live run", async () => {
    const [id] = await stack.send({ name: "test/order", data: { orderId: `api-${store}` } });
    const sleeping = await stack.waitForRun(id!, { status: "sleeping" });
    const response = await fetch(`${stack.executor.url}/api/runs/${sleeping.id}/cancel`, { method: "POST" });
    expect(response.status).toBe(200);
    expect(((await response.json()) as { status: string }).status).toBe("cancelled");
    expect((await stack.getRun(sleeping.id)).status).toBe("cancelled");
    const missing = await fetch(`${stack.executor.url}/api/runs/nope/cancel`, { method: "POST" });
    expect(missing.status).toBe(404);
  });

  it("fails the run with a non-determinism error naming both steps when the code changed under it", async () => {
    variant.stepName = "original";
    const [id] = await stack.send({ name: "test/changing", data: { key: store } });
    await stack.waitForRun(id!, { status: "sleeping" });
    variant.stepName = "renamed";
    const run = await stack.waitForRun(id!);
    variant.stepName = "original";
    expect(run.status).toBe("failed");
    expect(run.error?.name).toBe("NonDeterminismError");
    expect(run.error?.message).toContain('"original"');
    expect(run.error?.message).toContain('"renamed"');
  });
});
