/**
 * Events racing runs: a reply that beats its wait into the store, a run that sends the event
 * its own cancelOn or its own wait is waiting for, and a wait on a field the trigger lacks.
 */
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const bodies = new Map<string, number>();
const count = (key: string) => bodies.set(key, (bodies.get(key) ?? 0) + 1).get(key)!;
const Id = z.object({ id: z.string() });

const client = new Stepwise({
  id: "races",
  dev: true,
  schemas: {
    "races/ask": Id,
    "races/question": Id,
    "races/answer": Id,
    "races/self-cancel": Id,
    "races/cancel": Id,
    "races/self-ping": Id,
    "races/ping": Id,
    "races/missing": z.object({ id: z.string(), customerId: z.string().optional() }),
    "races/customer": z.object({ customerId: z.string().nullable() }),
  },
});

const asker = client.createFunction({ id: "asker", triggers: [{ event: "races/ask" }] }, async ({ event, step }) => {
  await step.sendEvent("question", { name: "races/question", data: { id: event.data.id } });
  const answer = await step.waitForEvent("answer", { event: "races/answer", match: "data.id", timeout: "20s" });
  return answer ? answer.data.id : null;
});

// Answers at once, from another function: the reply can reach the store before the asker's wait does.
const answerer = client.createFunction({ id: "answerer", triggers: [{ event: "races/question" }] }, async ({ event, step }) => {
  await step.sendEvent("reply", { name: "races/answer", data: { id: event.data.id } });
});

const selfCancel = client.createFunction(
  { id: "self-cancel", triggers: [{ event: "races/self-cancel" }], cancelOn: [{ event: "races/cancel", match: "data.id" }] },
  async ({ event, step }) => {
    await Promise.all([step.sendEvent("cancel-me", { name: "races/cancel", data: { id: event.data.id } }), step.sleep("nap", 300)]);
    await step.run("after-cancel", () => count(`${event.data.id}:after`));
    return "finished";
  },
);

const selfPing = client.createFunction({ id: "self-ping", triggers: [{ event: "races/self-ping" }] }, async ({ event, step }) => {
  const [ping] = await Promise.all([
    step.waitForEvent("ping", { event: "races/ping", match: "data.id", timeout: "20s" }),
    step.sendEvent("send-ping", { name: "races/ping", data: { id: event.data.id } }),
  ]);
  await step.run("one", () => count(`${event.data.id}:one`));
  await step.run("two", () => count(`${event.data.id}:two`));
  return ping?.name ?? null;
});

const missing = client.createFunction({ id: "missing", triggers: [{ event: "races/missing" }] }, async ({ step }) => {
  const found = await step.waitForEvent("customer", { event: "races/customer", match: "data.customerId", timeout: 1_500 });
  return found === null ? "timed out" : "matched";
});

const functions = [asker, answerer, selfCancel, selfPing, missing];

describe.each(STORE_KINDS)("races on %s", (store) => {
  let stack: Stack;
  let latencyMs = 0;
  beforeAll(async () => {
    stack = await startStack({
      store,
      client,
      functions,
      // App latency: the asker's wait reaches the executor this much later, the reply does not wait for it.
      intercept: async (request, app) => {
        if (latencyMs > 0 && request.method === "POST") await new Promise((resolve) => setTimeout(resolve, latencyMs));
        return app(request);
      },
    });
  });
  afterAll(async () => stack?.close());

  it.each([0, 150])("a reply sent right after the question resolves the wait (app latency %i ms), for every run", async (latency) => {
    latencyMs = latency;
    const ids = await stack.send(Array.from({ length: 5 }, (_, n) => ({ name: "races/ask", data: { id: `${store}-${latency}-${n}` } })));
    const runs = await Promise.all(ids.map((id) => stack.waitForRun(id, { functionId: "races-asker" })));
    latencyMs = 0;
    expect(runs.map((run) => run.output)).toEqual(Array.from({ length: 5 }, (_, n) => `${store}-${latency}-${n}`));
  });

  it("a run that sends its own cancelOn event is cancelled for good: the step after it never runs", async () => {
    const id = `${store}-cancel`;
    const [eventId] = await stack.send({ name: "races/self-cancel", data: { id } });
    const run = await stack.waitForRun(eventId!, { functionId: "races-self-cancel" });
    expect(run.status).toBe("cancelled");
    await new Promise((resolve) => setTimeout(resolve, 600)); // past the sleep
    expect((await stack.getRun(run.id)).status).toBe("cancelled");
    expect(bodies.get(`${id}:after`)).toBeUndefined();
    expect(run.steps.find((s) => s.name === "nap")?.status).toBe("cancelled");
  });

  it("a wait met by the run's own sendEvent resolves once, and every later step runs once", async () => {
    const id = `${store}-ping`;
    const [eventId] = await stack.send({ name: "races/self-ping", data: { id } });
    const run = await stack.waitForRun(eventId!, { functionId: "races-self-ping" });
    expect(run).toMatchObject({ status: "completed", output: "races/ping" });
    await new Promise((resolve) => setTimeout(resolve, 300)); // a forked second chain would have run by now
    expect([bodies.get(`${id}:one`), bodies.get(`${id}:two`)]).toEqual([1, 1]);
  });

  it("a wait on a field the trigger lacks is not met by an event with that field null", async () => {
    const [eventId] = await stack.send({ name: "races/missing", data: { id: store } });
    await stack.waitForRun(eventId!, { status: "waiting" });
    await stack.send({ name: "races/customer", data: { customerId: null } });
    const run = await stack.waitForRun(eventId!);
    expect(run.output).toBe("timed out");
    expect(stack.log.lines.some((line) => line.includes("has no data.customerId, so no event can match"))).toBe(true);
  });
});
