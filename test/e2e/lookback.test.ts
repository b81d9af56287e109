/**
 * `step.waitForEvent({ lookback })`: a wait also matches an event stored up to that long before
 * it began, the earliest that matches, so an approval sent while the run was still busy is not
 * missed. Without a look-back a wait sees only events stored since its invocation became due
 * (the default, unchanged), and an event older than the look-back is not matched either.
 */
import { NonRetriableError, Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const client = new Stepwise({
  id: "lookback",
  dev: true,
  schemas: {
    "order/placed": z.object({ orderId: z.string(), busyMs: z.number(), lookback: z.string().optional() }),
    "order/approved": z.object({ orderId: z.string(), by: z.string() }),
    "order/bad-lookback": z.object({}),
    "order/collect": z.object({ orderId: z.string() }),
    "doc/updated": z.object({ docId: z.string() }),
    "cart/opened": z.object({ items: z.array(z.string()) }),
    "cart/paid": z.object({ items: z.array(z.string()) }),
  },
});

/** Matches on a length the path walk reads off an array: no stored JSON holds that number as text. */
const sameSize = client.createFunction({ id: "same-size", triggers: [{ event: "cart/opened" }] }, async ({ step }) => {
  await step.sleep("busy", 400);
  const paid = await step.waitForEvent("paid", { event: "cart/paid", match: "data.items.length", timeout: 500, lookback: "1m" });
  return paid ? paid.data.items : null;
});

/** Collects approvals in a loop: each look-back must find a new one, not the first again. */
const collector = client.createFunction({ id: "collector", triggers: [{ event: "order/collect" }] }, async ({ step }) => {
  await step.sleep("busy", 400);
  const got: Array<string | null> = [];
  for (let n = 0; n < 2; n++) {
    const approved = await step.waitForEvent("approval", { event: "order/approved", match: "data.orderId", timeout: 500, lookback: "1m" });
    got.push(approved?.data.by ?? null);
  }
  return got;
});

/** Waits for the next update of its document, looking back: its own trigger is not that. */
const nextUpdate = client.createFunction({ id: "next-update", triggers: [{ event: "doc/updated" }] }, async ({ event, step }) => {
  const next = await step.waitForEvent("next", { event: "doc/updated", match: "data.docId", timeout: 500, lookback: "1m" });
  return next ? next.id : null;
});

/** Busy for a while (a step, then a sleep), then waits for the order's approval. */
const approval = client.createFunction({ id: "approval", triggers: [{ event: "order/placed" }] }, async ({ event, step }) => {
  await step.run("reserve", () => event.data.orderId);
  await step.sleep("busy", event.data.busyMs);
  const approved = await step.waitForEvent("approved", {
    event: "order/approved",
    match: "data.orderId",
    timeout: 1_000,
    ...(event.data.lookback === undefined ? {} : { lookback: event.data.lookback }),
  });
  return approved ? approved.data.by : null;
});

const badLookback = client.createFunction({ id: "bad-lookback", triggers: [{ event: "order/bad-lookback" }] }, async ({ step }) => {
  await step.waitForEvent("approved", { event: "order/approved", timeout: 1_000, lookback: "8d" });
});

describe.each(STORE_KINDS)("waitForEvent look-back on %s", (store) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store, client, functions: [approval, badLookback, collector, nextUpdate, sameSize] });
  }, 60_000);
  afterAll(async () => stack?.close());

  /** Places an order, then approves it (by `approvers`, in turn, plus one for another order) while the run is busy. */
  const placeThenApprove = async (orderId: string, busyMs: number, lookback?: string, approvers = ["ada"]) => {
    const [placed] = await stack.send({ name: "order/placed", data: { orderId, busyMs, ...(lookback === undefined ? {} : { lookback }) } });
    await stack.send({ name: "order/approved", data: { orderId: `${orderId}-other`, by: "mallory" } });
    for (const by of approvers) await stack.send({ name: "order/approved", data: { orderId, by } });
    return stack.waitForRun(placed!, { timeoutMs: 20_000 });
  };

  it("matches the earliest event of its key stored before the wait began, within the look-back", async () => {
    const run = await placeThenApprove(`${store}-a`, 400, "1m", ["ada", "grace"]);
    // Not null: a wait that times out resolves to null.
    expect(run).toMatchObject({ status: "completed", output: "ada" });
  });

  it("without a look-back, misses the approval that came while the run was busy (the default)", async () => {
    const run = await placeThenApprove(`${store}-b`, 1_500);
    expect(run).toMatchObject({ status: "completed", output: null });
  });

  it("does not match an event older than the look-back", async () => {
    const run = await placeThenApprove(`${store}-c`, 2_000, "1s");
    expect(run).toMatchObject({ status: "completed", output: null });
  });

  it("never hands a run an event one of its waits already received: a loop's second look-back times out", async () => {
    const orderId = `${store}-d`;
    const [id] = await stack.send({ name: "order/collect", data: { orderId } });
    await stack.send({ name: "order/approved", data: { orderId, by: "ada" } });
    const run = await stack.waitForRun(id!, { timeoutMs: 20_000 });
    expect(run).toMatchObject({ status: "completed", output: ["ada", null] });
  });

  it("never hands a run its own triggering event", async () => {
    const [id] = await stack.send({ name: "doc/updated", data: { docId: `${store}-e` } });
    const run = await stack.waitForRun(id!, { timeoutMs: 20_000 });
    expect(run).toMatchObject({ status: "completed", output: null });
  });

  it("matches on a path the stored JSON does not spell out (an array's length)", async () => {
    const [id] = await stack.send({ name: "cart/opened", data: { items: ["a", "b"] } });
    await stack.send({ name: "cart/paid", data: { items: [`${store}-x`, `${store}-y`] } });
    const run = await stack.waitForRun(id!, { timeoutMs: 20_000 });
    expect(run).toMatchObject({ status: "completed", output: [`${store}-x`, `${store}-y`] });
  });

  it("refuses a look-back over 7 days with an error that says so, and opens no wait", async () => {
    const [id] = await stack.send({ name: "order/bad-lookback", data: {} });
    const run = await stack.waitForRun(id!, { timeoutMs: 20_000 });
    expect(run.status).toBe("failed");
    expect(run.error?.name).toBe(NonRetriableError.name);
    expect(run.error?.message).toContain('step.waitForEvent("approved"): lookback must be between 1ms and 7d');
    expect(run.steps.filter((step) => step.id === "approved")).toEqual([]);
  });
});
