/**
 * Signals: `step.waitForSignal` and `stepwise.sendSignal` / `POST /api/signals`. A signal
 * resumes exactly the one run waiting for it; a signal nobody waits for is refused with a 404
 * (after a grace period in which a run about to reach its wait still gets it) and leaves nothing
 * behind; one run waits for a name at a time (`onConflict`).
 */
import { signalEventId } from "@stepwise/protocol";
import { SignalNotDeliveredError, Stepwise, StepwiseApiError } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

/** Shorter than the default (5 s), so the 404s here come quickly; still far above a busy step. */
const GRACE_MS = 2_000;

const client = new Stepwise({
  id: "signals",
  dev: true,
  schemas: {
    "approval/requested": z.object({ requestId: z.string(), busyMs: z.number(), timeoutMs: z.number(), onConflict: z.enum(["fail", "replace"]).optional() }),
    "approval/twice": z.object({ requestId: z.string() }),
    "approval/bad": z.object({ signal: z.string() }),
  },
});

/** Busy for a while, then waits for the approval of its request. */
const approval = client.createFunction({ id: "approval", triggers: [{ event: "approval/requested" }] }, async ({ event, step }) => {
  await step.run("send-email", () => event.data.requestId);
  if (event.data.busyMs > 0) await step.sleep("busy", event.data.busyMs);
  try {
    const approved = await step.waitForSignal<{ by: string }>("approved", {
      signal: `approval/${event.data.requestId}`,
      timeout: event.data.timeoutMs,
      ...(event.data.onConflict ? { onConflict: event.data.onConflict } : {}),
    });
    return approved ? { signal: approved.signal, by: approved.data.by } : null;
  } catch (error) {
    return { failed: (error as Error).name, message: (error as Error).message };
  }
});

/** Waits for one signal twice in a row: each wait needs a signal of its own. */
const twice = client.createFunction({ id: "twice", triggers: [{ event: "approval/twice" }] }, async ({ event, step }) => {
  const signal = `twice/${event.data.requestId}`;
  const first = await step.waitForSignal("first", { signal, timeout: 10_000 });
  const second = await step.waitForSignal("second", { signal, timeout: 1_000 });
  return [first?.data ?? null, second?.data ?? null];
});

const badSignal = client.createFunction({ id: "bad-signal", triggers: [{ event: "approval/bad" }] }, async ({ event, step }) => {
  await step.waitForSignal("approved", { signal: event.data.signal, timeout: 1_000 });
});

describe.each(STORE_KINDS)("signals on %s", (store) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store, client, functions: [approval, twice, badSignal], executor: { signalGraceMs: GRACE_MS } });
  }, 60_000);
  afterAll(async () => stack?.close());

  let n = 0;
  const request = async (data: { busyMs?: number; timeoutMs?: number; onConflict?: "fail" | "replace" } = {}) => {
    const requestId = `${store}-${++n}-${Date.now()}`;
    const [eventId] = await stack.send({ name: "approval/requested", data: { requestId, busyMs: data.busyMs ?? 0, timeoutMs: data.timeoutMs ?? 10_000, ...(data.onConflict && { onConflict: data.onConflict }) } });
    return { requestId, eventId: eventId!, signal: `approval/${requestId}` };
  };
  /** Until the run of `eventId` waits at its signal step. */
  const waiting = async (eventId: string) => {
    const run = await stack.waitForRun(eventId, { status: "waiting" });
    return run.id;
  };
  const storedSignals = async (id: string) => (await stack.store.transaction((tx) => tx.getEvent(signalEventId(id)))) !== null;

  it("resumes the run waiting for the signal with its data, and tells the sender which run", async () => {
    const { eventId, signal } = await request();
    const runId = await waiting(eventId);
    const sent = await client.sendSignal({ signal, data: { by: "ada" } });
    expect(sent).toMatchObject({ runId, stepId: "approved" });
    const run = await stack.waitForRun(eventId);
    expect(run.output).toEqual({ signal, by: "ada" });
    expect(await storedSignals(sent.id)).toBe(true);
  });

  it("delivers a signal sent while the run is still busy before its wait (the sender's request waits for it)", async () => {
    const { eventId, signal } = await request({ busyMs: 600 });
    const startedAt = Date.now();
    const sent = await client.sendSignal({ signal, data: { by: "early" } });
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(400);
    const run = await stack.waitForRun(eventId);
    expect(sent.runId).toBe(run.id);
    expect(run.output).toEqual({ signal, by: "early" });
  });

  it("answers 404 when no run waits for the signal within the grace period, and stores nothing", async () => {
    const startedAt = Date.now();
    const id = `nobody-${store}-${Date.now()}`;
    const refused = await client.sendSignal({ signal: `approval/nobody-${id}`, data: { by: "ada" }, id }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(SignalNotDeliveredError);
    expect(refused).toMatchObject({ status: 404, signal: `approval/nobody-${id}` });
    expect((refused as Error).message).toMatch(/No run waits for signal "approval\/nobody-.*": none reached step\.waitForSignal/);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(GRACE_MS - 50);
    expect(await storedSignals(id)).toBe(false);
  });

  it("resumes exactly one run when two senders send the same signal at once; the other hears 404", async () => {
    const { eventId, signal } = await request();
    await waiting(eventId);
    const senders = ["a", "b"];
    const results = await Promise.allSettled(senders.map((by) => client.sendSignal({ signal, data: { by } })));
    const winners = senders.filter((_, i) => results[i]!.status === "fulfilled");
    const refused = results.flatMap((r) => (r.status === "rejected" ? [r.reason] : []));
    expect(winners).toHaveLength(1);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toBeInstanceOf(SignalNotDeliveredError);
    const run = await stack.waitForRun(eventId);
    expect(run.output).toEqual({ signal, by: winners[0] });
  });

  it("a signal sent again with its id is a duplicate: the next wait for the name does not get it", async () => {
    const requestId = `${store}-twice-${Date.now()}`;
    const [eventId] = await stack.send({ name: "approval/twice", data: { requestId } });
    await waiting(eventId!);
    const id = `sig-${requestId}`;
    const first = await client.sendSignal({ signal: `twice/${requestId}`, data: 1, id });
    expect(first.duplicate).toBeUndefined();
    const again = await client.sendSignal({ signal: `twice/${requestId}`, data: 1, id });
    expect(again).toEqual({ id, duplicate: true });
    const run = await stack.waitForRun(eventId!);
    expect(run.output).toEqual([1, null]);
  });

  it("a second run waiting for a signal already awaited fails its step with SignalConflict; the first still gets the signal", async () => {
    const first = await request();
    const firstRun = await waiting(first.eventId);
    // A second request with the same ID: its wait names the same signal.
    const [secondEvent] = await stack.send({ name: "approval/requested", data: { requestId: first.requestId, busyMs: 0, timeoutMs: 10_000 } });
    const second = await stack.waitForRun(secondEvent!);
    expect(second.output).toMatchObject({ failed: "SignalConflict", message: expect.stringContaining(`run ${firstRun} (step "approved") already waits for signal "${first.signal}"`) });
    const sent = await client.sendSignal({ signal: first.signal, data: { by: "ada" } });
    expect(sent.runId).toBe(firstRun);
    expect((await stack.waitForRun(first.eventId)).output).toEqual({ signal: first.signal, by: "ada" });
  });

  it("onConflict: replace takes the signal over; the replaced wait resolves null at its timeout", async () => {
    const first = await request({ timeoutMs: 1_500 });
    await waiting(first.eventId);
    const [secondEvent] = await stack.send({ name: "approval/requested", data: { requestId: first.requestId, busyMs: 0, timeoutMs: 10_000, onConflict: "replace" } });
    const secondRun = await waiting(secondEvent!);
    const sent = await client.sendSignal({ signal: first.signal, data: { by: "ada" } });
    expect(sent.runId).toBe(secondRun);
    expect((await stack.waitForRun(secondEvent!)).output).toEqual({ signal: first.signal, by: "ada" });
    expect((await stack.waitForRun(first.eventId)).output).toBeNull();
  });

  it("resolves null at the timeout when no signal comes, and a signal after it is refused", async () => {
    const { eventId, signal } = await request({ timeoutMs: 300 });
    const run = await stack.waitForRun(eventId);
    expect(run.output).toBeNull();
    await expect(client.sendSignal({ signal })).rejects.toBeInstanceOf(SignalNotDeliveredError);
  });

  it("refuses a bad signal with a 400 that says what is wrong, and delivers nothing", async () => {
    const { eventId, signal } = await request({ timeoutMs: 3_000 });
    await waiting(eventId);
    const post = async (body: unknown) => {
      const response = await fetch(`${stack.executor.url}/api/signals`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      return { status: response.status, error: ((await response.json()) as { error: string }).error };
    };
    expect(await post({ data: { by: "x" } })).toMatchObject({ status: 400, error: expect.stringContaining("Invalid signal at signal") });
    expect(await post({ signal: "" })).toMatchObject({ status: 400, error: expect.stringContaining("signal must not be empty") });
    expect(await post({ signal: "x".repeat(257) })).toMatchObject({ status: 400, error: expect.stringContaining("at most 256 characters") });
    expect(await post({ signal, date: {} })).toMatchObject({ status: 400, error: expect.stringContaining("date") });
    expect(await post({ signal, id: "stepwise:x" })).toMatchObject({ status: 400, error: expect.stringContaining("reserved") });
    expect(await post({ signal, data: "x".repeat(600_000) })).toMatchObject({ status: 413, error: expect.stringContaining("Payload too large") });
    // The SDK checks the same rules before sending.
    await expect(client.sendSignal({ signal: "" })).rejects.toMatchObject({ status: 400 });
    await expect(client.sendSignal({ signal: "" })).rejects.toBeInstanceOf(StepwiseApiError);
    // The run still waits, and the first good signal resumes it.
    expect((await stack.getRun((await stack.runsOf(eventId))[0]!.id)).status).toBe("waiting");
    await client.sendSignal({ signal, data: { by: "ok" } });
    expect((await stack.waitForRun(eventId)).output).toEqual({ signal, by: "ok" });
  });

  it("a function naming a bad signal fails the step with a message that names it", async () => {
    const [eventId] = await stack.send({ name: "approval/bad", data: { signal: "" } });
    const run = await stack.waitForRun(eventId!);
    expect(run.status).toBe("failed");
    expect(run.error?.message).toMatch(/step\.waitForSignal\("approved"\): signal must not be empty/);
  });
});
