/** Replay: how errors are reported, non-determinism, and misuse of the step tools. */
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { NonRetriableError, RetryAfterError, Stepwise, StepError } from "../src/index.ts";
import { done, failed, invoke, pending, recordingLogger, request } from "./helpers.ts";

const { logger } = recordingLogger();
const stepwise = new Stepwise({ id: "shop", schemas: { "order/created": z.object({ orderId: z.string() }) }, logger });
const trigger = [{ event: "order/created" }] as const;

afterEach(() => vi.useRealTimers());

describe("errors", () => {
  it("serializes a thrown step error with name, message and stack", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      await step.run("boom", () => {
        throw new TypeError("bad input");
      });
    });
    const res = await invoke(fn);
    expect(res.body).toMatchObject({ type: "ops", ops: [{ op: "step-failed", id: "boom", retriable: true, error: { name: "TypeError", message: "bad input" } }] });
    const op = (res.body as { ops: Array<{ error: { stack?: string } }> }).ops[0];
    expect(op?.error.stack).toContain("bad input");
  });

  it("marks NonRetriableError steps as not retriable", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      await step.run("boom", () => {
        throw new NonRetriableError("gone", { cause: new Error("404") });
      });
    });
    const res = await invoke(fn);
    expect(res.body).toMatchObject({ ops: [{ op: "step-failed", retriable: false, error: { name: "NonRetriableError", message: "gone" } }] });
  });

  it("sets retryAt for RetryAfterError, from a duration or a date", async () => {
    vi.useFakeTimers({ toFake: ["Date"], now: new Date("2030-01-01T00:00:00.000Z") });
    const fromDuration = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      await step.run("boom", () => {
        throw new RetryAfterError("rate limited", "2m");
      });
    });
    expect((await invoke(fromDuration)).body).toMatchObject({
      ops: [{ op: "step-failed", retriable: true, retryAt: "2030-01-01T00:02:00.000Z", error: { name: "RetryAfterError" } }],
    });
    const fromDate = stepwise.createFunction({ id: "g", triggers: [...trigger] }, async () => {
      throw new RetryAfterError("later", new Date("2030-03-01T00:00:00Z"));
    });
    expect(await invoke(fromDate)).toMatchObject({
      status: 500,
      body: { type: "error", retriable: true, retryAt: "2030-03-01T00:00:00.000Z", error: { message: "later" } },
    });
  });

  it("answers a retriable error when the body throws outside steps, and not for NonRetriableError", async () => {
    const plain = stepwise.createFunction({ id: "f", triggers: [...trigger] }, () => {
      throw new Error("oops");
    });
    expect(await invoke(plain)).toMatchObject({ status: 500, body: { type: "error", retriable: true, error: { name: "Error", message: "oops" } } });
    const final = stepwise.createFunction({ id: "g", triggers: [...trigger] }, async () => {
      throw new NonRetriableError("bad order");
    });
    expect(await invoke(final)).toMatchObject({ status: 500, body: { retriable: false, error: { name: "NonRetriableError" } } });
  });

  it("fails a step whose result is not JSON, without retry", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => step.run("big", () => 1n));
    expect((await invoke(fn)).body).toMatchObject({ ops: [{ op: "step-failed", retriable: false, error: { name: "NotJsonError" } }] });
  });

  it("refuses a new wait whose if does not parse, and replays a stored one as it is", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) =>
      step.waitForEvent("paid", { event: "payment/settled", timeout: "1h", if: "async.data.orderId ==" }),
    );
    expect(await invoke(fn)).toMatchObject({
      status: 500,
      body: { type: "error", retriable: false, error: { name: "NonRetriableError", message: expect.stringContaining('step.waitForEvent("paid"): if: "async.data.orderId ==" is not a valid CEL expression') } },
    });
    expect(await invoke(fn, request([pending(0, "paid", "wait")]))).toMatchObject({ status: 206, body: { type: "ops", ops: [] } });
  });

  it("reports a step's own retry policy with its failure, and nothing when it has none", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger], retries: 3 }, async ({ step }) => {
      await step.run({ id: "charge", retries: 5, backoff: { initialMs: 200, factor: 3 } }, () => {
        throw new Error("card declined");
      });
    });
    const [op] = ((await invoke(fn)).body as { ops: Record<string, unknown>[] }).ops;
    expect(op).toMatchObject({ op: "step-failed", id: "charge", name: "charge", retries: 5, backoff: { initialMs: 200, factor: 3 } });
    const plain = stepwise.createFunction({ id: "g", triggers: [...trigger] }, async ({ step }) =>
      step.run({ id: "plain" }, () => {
        throw new Error("no");
      }),
    );
    const [plainOp] = ((await invoke(plain)).body as { ops: Record<string, unknown>[] }).ops;
    expect(plainOp).toMatchObject({ op: "step-failed", id: "plain" });
    expect(plainOp).not.toHaveProperty("retries");
    expect(plainOp).not.toHaveProperty("backoff");
  });

  it("refuses a bad step retry policy at the call, naming the step and the option, without running the step or retrying", async () => {
    let ran = false;
    const cases: Array<[unknown, string]> = [
      [{ id: "charge", retries: 21 }, 'step.run("charge"): retries:'],
      [{ id: "charge", retries: 1.5 }, 'step.run("charge"): retries:'],
      [{ id: "charge", backoff: { initialMs: -1 } }, 'step.run("charge"): backoff.initialMs:'],
      [{ id: "charge", retry: 3 }, 'step.run("charge"): options: Unrecognized key: "retry"'],
    ];
    for (const [options, message] of cases) {
      const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) =>
        step.run(options as { id: string }, () => {
          ran = true;
        }),
      );
      const res = await invoke(fn);
      expect(res).toMatchObject({
        status: 500,
        body: { type: "error", retriable: false, error: { name: "NonRetriableError", message: expect.stringContaining(message) } },
      });
    }
    expect(ran).toBe(false);
  });
});

describe("non-determinism", () => {
  it("fails when the step at a position has another name", async () => {
    const ran: string[] = [];
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      await step.run("reserve", () => 1);
      await step.run("validate", () => 2);
      await step.run("charge-card", () => ran.push("charge-card"));
    });
    const res = await invoke(fn, request([done(0, "reserve", 1), done(1, "validate", 2), done(2, "charge", 3)]));
    expect(ran).toEqual([]);
    expect(res).toEqual({
      status: 500,
      body: {
        type: "error",
        retriable: false,
        error: {
          name: "NonDeterminismError",
          message: expect.stringContaining('Step at position 2 was "charge" (run) in the stored run, but the function now calls "charge-card" (run) there.'),
        },
      },
    });
  });

  it("fails when the step at a position has another kind", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      await step.sleep("pause", "1s");
    });
    const res = await invoke(fn, request([done(0, "pause", null, "run")]));
    expect(res.body).toMatchObject({ type: "error", retriable: false, error: { name: "NonDeterminismError", message: expect.stringContaining('"pause" (run)') } });
  });

  it("fails when a stored step ID comes back as another kind at another position", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      await step.run("first", () => 1);
      await step.sleep("wait", "1s");
    });
    const res = await invoke(fn, request([done(0, "first", 1), pending(5, "wait", "wait")]));
    expect(res.body).toMatchObject({ error: { name: "NonDeterminismError", message: expect.stringContaining('Step "wait" was a wait step') } });
  });
});

describe("misuse", () => {
  it("fails a step that calls another step instead of hanging", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      await step.run("outer", async () => step.run("inner", () => 1));
    });
    const res = await invoke(fn);
    expect(res.body).toMatchObject({
      ops: [{ op: "step-failed", id: "outer", retriable: false, error: { message: expect.stringContaining('"inner" (run) was called inside step "outer"') } }],
    });
  });

  it("throws an invoked function's failure at the await with the child's error name", async () => {
    const child = stepwise.createFunction({ id: "child", triggers: [] }, async () => 1);
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      try {
        await step.invoke("charge", { function: child, data: {} });
        return "no error";
      } catch (error) {
        return { caught: error instanceof StepError, name: (error as Error).name, message: (error as Error).message };
      }
    });
    const res = await invoke(fn, request([failed(0, "charge", { name: "CardDeclined", message: "Invoked run r2 failed: declined" }, "invoke")]));
    expect(res.body).toEqual({ type: "completed", output: { caught: true, name: "CardDeclined", message: "Invoked run r2 failed: declined" } });
  });

  it("ignores step calls made after the invocation was answered", async () => {
    let late: Promise<unknown> | undefined;
    // The late call is made once the answer is in hand, however long the invocation took (a
    // timer of a few milliseconds fired before it on a loaded machine).
    let answered!: () => void;
    const afterAnswer = new Promise<void>((resolve) => (answered = resolve));
    const fn = stepwise.createFunction({ id: "f", triggers: [...trigger] }, async ({ step }) => {
      void afterAnswer.then(() => (late = step.run("late", () => 1)));
      await step.sleep("nap", "1h");
    });
    const res = await invoke(fn);
    answered();
    expect(res.body).toMatchObject({ ops: [{ op: "sleep", id: "nap" }] });
    while (!late) await new Promise((resolve) => setTimeout(resolve, 5));
    const settled = await Promise.race([late, new Promise((resolve) => setTimeout(() => resolve("still pending"), 10))]);
    expect(settled).toBe("still pending");
  });
});
