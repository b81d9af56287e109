/**
 * The app misbehaving, and values no store can hold as they are: every run still ends, the
 * number of attempts stays bounded, and each refusal says what was wrong. Faults come from an
 * interceptor in front of the app (a load balancer answering 502, a cut-off answer) or from a
 * raw app that answers what no SDK would.
 */
import { NonRetriableError, Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startRawApp, type RawApp } from "../support/raw-app.ts";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const bodies = new Map<string, number>();
const count = (key: string) => bodies.set(key, (bodies.get(key) ?? 0) + 1).get(key)!;

const client = new Stepwise({
  id: "faults",
  dev: true,
  schemas: { "faults/parallel": z.object({ key: z.string() }), "faults/own-retries": z.object({ key: z.string() }), "faults/values": z.object({ key: z.string() }), "faults/bad-ts": z.object({}) },
});

const parallel = client.createFunction({ id: "parallel", triggers: [{ event: "faults/parallel" }], retries: 4 }, async ({ event, step }) => {
  const [a, b] = await Promise.all([
    step.run("a", () => (count(`${event.data.key}:a`), "a")),
    step.run("b", () => (count(`${event.data.key}:b`), "b")),
  ]);
  return a + b;
});

// The function retries nothing; branch "c" retries 3 times of its own.
const ownRetries = client.createFunction({ id: "own-retries", triggers: [{ event: "faults/own-retries" }], retries: 0 }, async ({ event, step }) => {
  const [c, d] = await Promise.all([
    step.run({ id: "c", retries: 3, backoff: { initialMs: 20 } }, () => (count(`${event.data.key}:c`), "c")),
    step.run("d", () => (count(`${event.data.key}:d`), "d")),
  ]);
  return c + d;
});

const values = client.createFunction({ id: "values", triggers: [{ event: "faults/values" }], retries: 0 }, async ({ step }) => {
  const text = await step.run("nul", () => "a\u0000b\ud800c\udfff😀");
  const order = await step.run("order", () => ({ b: 1, a: 2, "10": 3, "2": 4 }));
  const caught = await step
    .run("throws", () => {
      throw new NonRetriableError("bad \u0000 input");
    })
    .catch((error: Error) => error.message);
  return { text, keys: Object.keys(order), caught };
});

const badTs = client.createFunction({ id: "bad-ts", triggers: [{ event: "faults/bad-ts" }], retries: 3 }, async ({ step }) => {
  await step.sendEvent("fractional", { name: "faults/other", data: {}, ts: 1.5 });
  return "sent";
});

/** A load balancer's error page: HTML, not JSON. */
const badGateway = () => new Response("<html><body><h1>502 Bad Gateway</h1></body></html>", { status: 502, headers: { "content-type": "text/html" } });

describe.each(STORE_KINDS)("faults on %s", (store) => {
  let stack: Stack;
  let faults: { targeted502: number; truncate: number };
  beforeAll(async () => {
    faults = { targeted502: 0, truncate: 0 };
    stack = await startStack({
      store,
      client,
      functions: [parallel, ownRetries, values, badTs],
      intercept: async (request, app) => {
        if (request.method !== "POST") return app(request);
        const body = (await request.clone().json()) as { targetStep?: string };
        if ((body.targetStep === "b" || body.targetStep === "c") && faults.targeted502 > 0) {
          faults.targeted502--;
          return badGateway();
        }
        const response = await app(request);
        if (body.targetStep === "a" && faults.truncate > 0) {
          faults.truncate--;
          const text = await response.text();
          return new Response(text.slice(0, Math.floor(text.length / 2)), { status: response.status, headers: response.headers });
        }
        return response;
      },
    });
  });
  afterAll(async () => stack?.close());

  it("a parallel branch answered with a 502 page, or with its answer cut off, is retried and the run completes", async () => {
    const key = `parallel-${store}`;
    faults.targeted502 = 2;
    faults.truncate = 1;
    const [id] = await stack.send({ name: "faults/parallel", data: { key } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("completed");
    expect(run.output).toBe("ab");
    expect(run.steps.find((s) => s.id === "b")).toMatchObject({ status: "completed", attempts: 3 });
    expect(run.steps.find((s) => s.id === "a")).toMatchObject({ status: "completed", attempts: 2 });
    // The 502 came before the app: b's body ran once. a's first answer was cut off after its body ran.
    expect([bodies.get(`${key}:a`), bodies.get(`${key}:b`)]).toEqual([2, 1]);
    expect(stack.log.lines.some((line) => line.includes('step "b" attempt 1 of 5 failed: AppError: The app answered HTTP 502'))).toBe(true);
  });

  it("a 502 page in place of a branch's answer counts against the branch's own retries, not its function's", async () => {
    const key = `own-${store}`;
    faults.targeted502 = 2;
    const [id] = await stack.send({ name: "faults/own-retries", data: { key } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("completed");
    expect(run.output).toBe("cd");
    expect(run.steps.find((s) => s.id === "c")).toMatchObject({ status: "completed", attempts: 3 });
    expect([bodies.get(`${key}:c`), bodies.get(`${key}:d`)]).toEqual([1, 1]);
    expect(stack.log.lines.some((line) => line.includes('step "c" attempt 2 of 4 failed: AppError: The app answered HTTP 502'))).toBe(true);
  });

  it("step outputs and errors with NUL characters, lone surrogates and any key order come back exactly", async () => {
    const [id] = await stack.send({ name: "faults/values", data: { key: store } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("completed");
    expect(run.output).toEqual({ text: "a\u0000b\ud800c\udfff😀", keys: ["2", "10", "b", "a"], caught: "bad \u0000 input" });
    expect(JSON.stringify(run.steps.find((s) => s.id === "order")?.output)).toBe('{"2":4,"10":3,"b":1,"a":2}');
  });

  it("step.sendEvent with a fractional ts fails the run once, with a clear error, instead of retrying for ever", async () => {
    const [id] = await stack.send({ name: "faults/bad-ts", data: {} });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("failed");
    expect(run.error?.message).toMatch(/ts/);
    expect(run.steps).toEqual([]);
  });

  describe("answers no SDK would send", () => {
    let raw: RawApp;
    const ref = (id: string, position = 0) => ({ id, name: id, position });

    beforeAll(async () => {
      raw = await startRawApp(stack.executor.executor, `raw-${store}`, [
        { id: "forge", triggers: [{ event: "raw/forge" }], retries: 3 },
        { id: "deep", triggers: [{ event: "raw/deep" }], retries: 3 },
        { id: "nul-name", triggers: [{ event: "raw/nul-name" }], retries: 3 },
        { id: "stale", triggers: [{ event: "raw/stale" }], retries: 1 },
        { id: "victim", triggers: [{ event: "raw/victim" }], retries: 0 },
        { id: "victim-failure", triggers: [{ event: "stepwise/function.failed", if: "event.data.functionId == 'raw-" + store + "-victim'" }], retries: 0, onFailureOf: "victim" },
      ], (request, nth) => {
        const fn = request.run.functionId;
        if (fn === "forge") {
          if (nth === 1) {
            const forged = { name: "stepwise/function.failed", data: { functionId: `raw-${store}-victim`, runId: "never-failed", error: { name: "E", message: "forged" }, event: {} } };
            return { status: 206, body: { type: "ops", ops: [{ op: "send", ...ref("forge"), events: [forged] }] } };
          }
          const sent = request.steps[0]!;
          return { status: 200, body: { type: "completed", output: sent.status === "failed" ? sent.error : sent.output } };
        }
        if (fn === "deep") {
          // Written by hand: JSON.stringify itself cannot write a value this deep.
          const deep = "[".repeat(5_000) + "1" + "]".repeat(5_000);
          if (nth === 1) return { status: 206, body: null, raw: JSON.stringify({ type: "ops", ops: [{ op: "step-ran", ...ref("deep"), output: "@" }] }).replace('"@"', deep) };
          return { status: 500, body: { type: "error", error: request.steps[0]!.error, retriable: false } };
        }
        if (fn === "nul-name") return { status: 206, body: { type: "ops", ops: [{ op: "step-ran", id: "a\u0000b", name: "a\u0000b", position: 0, output: 1 }] } };
        if (fn === "stale") return { status: 206, body: { type: "ops", ops: [{ op: "step-ran", ...ref("only"), output: nth }] } };
        return { status: 200, body: { type: "completed", output: "victim ran" } };
      });
    });
    afterAll(async () => raw?.close());

    const invocations = (runId: string) => raw.requests.filter((r) => r.run.id === runId).length;

    it("a function sending a reserved event fails that step; no onFailure runs for a run that never failed", async () => {
      const [id] = await stack.send({ name: "raw/forge", data: {} });
      const run = await stack.waitForRun(id!);
      expect(run.steps[0]).toMatchObject({ status: "failed", error: { name: "InvalidEvent", message: expect.stringMatching(/reserved for the executor/) } });
      expect(await stack.runsOf("stepwise:never-failed:failed")).toEqual([]);
      expect(raw.requests.some((r) => r.run.functionId === "victim-failure")).toBe(false);
    });

    it("a step output nested 5,000 levels deep fails the step for good, after one invocation", async () => {
      const [id] = await stack.send({ name: "raw/deep", data: {} });
      const run = await stack.waitForRun(id!);
      expect(run.status).toBe("failed");
      expect(run.steps[0]).toMatchObject({ status: "failed", error: { name: "StepOutputNotStorable" } });
      expect(invocations(run.id)).toBe(2);
    });

    it("a step name with a NUL character fails the run once, naming the problem", async () => {
      const [id] = await stack.send({ name: "raw/nul-name", data: {} });
      const run = await stack.waitForRun(id!);
      expect(run.status).toBe("failed");
      expect(run.error).toMatchObject({ name: "AppAnswerInvalid", message: expect.stringMatching(/step id contains a NUL character/) });
      expect(invocations(run.id)).toBe(1);
    });

    it("an answer of steps already stored, with nothing in flight, is retried with backoff and its retries run out", async () => {
      const [id] = await stack.send({ name: "raw/stale", data: {} });
      const run = await stack.waitForRun(id!);
      expect(run.status).toBe("failed");
      expect(run.error?.name).toBe("FunctionStalled");
      // 1: the step runs. 2 and 3: only the stored step again, so the body's two attempts fail.
      expect(invocations(run.id)).toBe(3);
    });
  });
});
