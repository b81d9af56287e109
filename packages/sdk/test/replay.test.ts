/** Replay: memoized results, what a new step turns into, and what ends the invocation. */
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { Stepwise, StepError } from "../src/index.ts";
import { done, failed, invoke, pending, recordingLogger, request } from "./helpers.ts";

const { logger } = recordingLogger();
const stepwise = new Stepwise({ id: "shop", schemas: { "order/created": z.object({ orderId: z.string() }) }, logger });
const trigger = [{ event: "order/created" }] as const;

afterEach(() => vi.useRealTimers());

describe("memoized steps", () => {
  it("returns stored outputs and runs only the first new step", async () => {
    const calls: string[] = [];
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step, event }) => {
      const a = await step.run("a", () => calls.push("a"));
      const b = await step.run("b", () => {
        calls.push("b");
        return { doubled: (a as number) * 2, order: event.data.orderId };
      });
      await step.run("c", () => calls.push("c"));
      return b;
    });
    const res = await invoke(fn, request([done(0, "a", 21)]));
    expect(calls).toEqual(["b"]);
    expect(res).toEqual({
      status: 206,
      body: { type: "ops", ops: [{ op: "step-ran", id: "b", name: "b", position: 1, output: { doubled: 42, order: "o1" } }] },
    });
  });

  it("completes with the output once every step is stored", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      const a = await step.run("a", () => 1);
      const b = await step.run("b", () => 2);
      return { sum: a + b, none: undefined };
    });
    const res = await invoke(fn, request([done(0, "a", 1), done(1, "b", 2)]));
    expect(res).toEqual({ status: 200, body: { type: "completed", output: { sum: 3 } } });
  });

  it("answers completed with null output for a function returning nothing", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async () => {});
    expect(await invoke(fn)).toEqual({ status: 200, body: { type: "completed", output: null } });
  });

  it("gives repeated names counters and positions in call order", async () => {
    const seen: unknown[] = [];
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      for (let i = 0; i < 3; i++) seen.push(await step.run("item", () => i));
    });
    const res = await invoke(fn, request([done(0, "item", "zero"), done(1, "item", "one", "run", "item:1")]));
    expect(seen).toEqual(["zero", "one"]);
    expect(res.body).toEqual({ type: "ops", ops: [{ op: "step-ran", id: "item:2", name: "item", position: 2, output: 2 }] });
  });

  it("throws a failed step's stored error at its await, where it can be caught", async () => {
    let caught: unknown;
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      try {
        await step.run("charge", () => "never runs");
      } catch (error) {
        caught = error;
      }
      return step.run("refund", () => "refunded");
    });
    const res = await invoke(fn, request([failed(0, "charge", { name: "CardDeclined", message: "card declined" })]));
    expect(caught).toBeInstanceOf(StepError);
    expect(caught).toMatchObject({ name: "CardDeclined", message: "card declined", stepId: "charge" });
    expect(res.body).toMatchObject({ type: "ops", ops: [{ op: "step-ran", id: "refund", position: 1, output: "refunded" }] });
  });

  it("fails the run without retry when a failed step's error escapes", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      await step.run("charge", () => "never runs");
    });
    const res = await invoke(fn, request([failed(0, "charge", { name: "CardDeclined", message: "card declined" })]));
    expect(res.status).toBe(500);
    expect(res.body).toMatchObject({ type: "error", retriable: false, error: { name: "CardDeclined", message: "card declined" } });
  });

  it("leaves pending steps unresolved and unreported", async () => {
    let after = false;
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      await step.sleep("nap", "1h");
      after = true;
    });
    const res = await invoke(fn, request([pending(0, "nap", "sleep")]));
    expect(after).toBe(false);
    expect(res).toEqual({ status: 206, body: { type: "ops", ops: [] } });
  });

  it("waits for work outside steps (not a step) before deciding", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      const a = await step.run("a", () => 1);
      await new Promise((resolve) => setTimeout(resolve, 20));
      return step.run("b", () => a + 1);
    });
    const res = await invoke(fn, request([done(0, "a", 1)]));
    expect(res.body).toMatchObject({ type: "ops", ops: [{ op: "step-ran", id: "b", output: 2 }] });
  });
});

describe("new steps", () => {
  it("plans parallel runs instead of running them", async () => {
    const ran: string[] = [];
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      await step.run("first", () => ran.push("first"));
      return Promise.all([step.run("left", () => ran.push("left")), step.run("right", () => ran.push("right"))]);
    });
    const res = await invoke(fn, request([done(0, "first", 1)]));
    expect(ran).toEqual([]);
    expect(res).toEqual({
      status: 206,
      body: {
        type: "ops",
        ops: [
          { op: "step-planned", id: "left", name: "left", position: 1 },
          { op: "step-planned", id: "right", name: "right", position: 2 },
        ],
      },
    });
  });

  it("runs only the targetStep, even with other new steps around", async () => {
    const ran: string[] = [];
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      await Promise.all([
        step.run("left", () => ran.push("left")),
        step.run("right", () => {
          ran.push("right");
          return "R";
        }),
        step.run("third", () => ran.push("third")),
      ]);
    });
    const steps = [pending(0, "left"), pending(1, "right")];
    const res = await invoke(fn, request(steps, { targetStep: "right", run: { id: "run-1", appId: "shop", functionId: "shop-f", attempt: 2 } }));
    expect(ran).toEqual(["right"]);
    expect(res).toEqual({ status: 206, body: { type: "ops", ops: [{ op: "step-ran", id: "right", name: "right", position: 1, output: "R" }] } });
  });

  it("answers a non-retriable error when the targetStep is never reached", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => step.run("a", () => 1));
    const res = await invoke(fn, request([], { targetStep: "ghost" }));
    expect(res.status).toBe(500);
    expect(res.body).toMatchObject({ type: "error", retriable: false, error: { message: expect.stringContaining('"ghost"') } });
  });

  it("describes sleeps, waits, sends and invokes with their fields", async () => {
    vi.useFakeTimers({ toFake: ["Date"], now: new Date("2030-01-01T00:00:00.000Z") });
    const child = stepwise.createFunction({ id: "child", triggers: [{ event: "child/run" }] }, async () => "ok");
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      await Promise.all([
        step.sleep("nap", "90m"),
        step.sleepUntil("alarm", "2030-02-01T08:00:00Z"),
        step.waitForEvent("paid", { event: "payment/settled", timeout: "2d", match: "data.orderId" }),
        step.sendEvent("notify", [{ name: "order/created", data: { orderId: "o2" } }, { name: "audit/log" }]),
        step.invoke("charge", { function: child, data: { amount: 5 }, timeout: "1h" }),
        step.invoke("charge", { function: child, data: { amount: 6 } }),
      ]);
    });
    const res = await invoke(fn);
    expect(res.status).toBe(206);
    expect(res.body).toEqual({
      type: "ops",
      ops: [
        { op: "sleep", id: "nap", name: "nap", position: 0, until: "2030-01-01T01:30:00.000Z" },
        { op: "sleep", id: "alarm", name: "alarm", position: 1, until: "2030-02-01T08:00:00.000Z" },
        { op: "wait", id: "paid", name: "paid", position: 2, event: "payment/settled", timeoutAt: "2030-01-03T00:00:00.000Z", match: "data.orderId" },
        { op: "send", id: "notify", name: "notify", position: 3, events: [{ name: "order/created", data: { orderId: "o2" } }, { name: "audit/log", data: {} }] },
        { op: "invoke", id: "charge", name: "charge", position: 4, functionId: "shop-child", data: { amount: 5 }, timeoutAt: "2030-01-01T01:00:00.000Z" },
        { op: "invoke", id: "charge:1", name: "charge", position: 5, functionId: "shop-child", data: { amount: 6 } },
      ],
    });
  });

  it.each([
    [30_000, "2030-01-01T00:00:30.000Z"],
    ["30s", "2030-01-01T00:00:30.000Z"],
    ["5m", "2030-01-01T00:05:00.000Z"],
    ["2h", "2030-01-01T02:00:00.000Z"],
    ["1d", "2030-01-02T00:00:00.000Z"],
  ])("sleeps %s until %s", async (duration, until) => {
    vi.useFakeTimers({ toFake: ["Date"], now: new Date("2030-01-01T00:00:00.000Z") });
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => step.sleep("nap", duration));
    expect((await invoke(fn)).body).toEqual({ type: "ops", ops: [{ op: "sleep", id: "nap", name: "nap", position: 0, until }] });
  });

  it("throws an invalid duration at the step's await", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => step.sleep("nap", "soon"));
    const res = await invoke(fn);
    expect(res.body).toMatchObject({ type: "error", error: { name: "RangeError", message: expect.stringContaining('"soon"') } });
  });

  it("resolves stored results of waits, sends and invokes", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      const paid = await step.waitForEvent("paid", { event: "payment/settled", timeout: "1d" });
      const late = await step.waitForEvent("late", { event: "payment/settled", timeout: "1d" });
      const sent = await step.sendEvent("notify", { name: "audit/log", data: {} });
      await step.sleep("nap", 10);
      return { paid: paid?.name, late, sent };
    });
    const res = await invoke(fn, request([
      done(0, "paid", { id: "e2", name: "payment/settled", data: {}, ts: 1 }, "wait"),
      done(1, "late", null, "wait"),
      done(2, "notify", { ids: ["x"] }, "send"),
      { id: "nap", name: "nap", kind: "sleep", position: 3, status: "completed" },
    ]));
    expect(res.body).toEqual({ type: "completed", output: { paid: "payment/settled", late: null, sent: { ids: ["x"] } } });
  });

  it("rejects a sendEvent whose data breaks the schema, reporting nothing", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      await step.sendEvent("notify", { name: "order/created", data: { orderId: 7 } as never });
    });
    const res = await invoke(fn);
    expect(res.body).toMatchObject({
      type: "error",
      retriable: false,
      error: { name: "StepwiseValidationError", message: expect.stringContaining("data.orderId") },
    });
  });
});
