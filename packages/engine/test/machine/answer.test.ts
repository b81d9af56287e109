import { describe, expect, it } from "vitest";
import { applyAnswer } from "../../src/machine/answer.ts";
import { settle } from "../../src/machine/progress.ts";
import { draft, env, fn, NOW, step, written } from "./fixtures.ts";

const untargeted = { startedAt: NOW - 10 };
const ref = (id: string, position = 0) => ({ id, name: id, position });

describe("an untargeted answer", () => {
  it("completed: the run ends with the output, and its jobs and matchers go", () => {
    const d = draft([], { status: "queued" });
    applyAnswer(d, env(), untargeted, { type: "completed", output: { total: 3 } });
    expect(d.change.run).toMatchObject({ status: "completed", output: { total: 3 } });
    expect(d.change.dropJobs).toBe("all");
    expect(d.change.closeMatchers).toBe("all");
    expect(d.lines.map((l) => l.line)).toEqual([expect.stringContaining("started"), expect.stringContaining("completed in")]);
  });

  it("error, retriable, with attempts left: the body is retried after a backoff on the store's clock", () => {
    const d = draft([], { attempt: 0 });
    applyAnswer(d, env(), untargeted, { type: "error", error: { name: "AppUnreachable", message: "refused" }, retriable: true });
    expect(d.change.run.attempt).toBe(1);
    expect(d.change.jobs).toEqual([{ kind: "invoke", runId: "run-1", delayMs: expect.any(Number) }]);
    expect(d.change.jobs[0]!.delayMs).toBeGreaterThanOrEqual(500);
    expect(d.change.jobs[0]!.runAt).toBeUndefined();
  });

  it("error with retries spent, or not retriable: the run fails, once", () => {
    const spent = draft([], { attempt: 2 });
    applyAnswer(spent, env(), untargeted, { type: "error", error: { name: "AppError", message: "HTTP 403" }, retriable: true });
    expect(spent.change.run.status).toBe("failed");
    const final = draft();
    applyAnswer(final, env(), untargeted, { type: "error", error: { name: "NonRetriableError", message: "no" }, retriable: false });
    expect(final.change.run).toMatchObject({ status: "failed", error: { name: "NonRetriableError" } });
    expect(final.effects).toEqual([{ type: "send", events: [expect.objectContaining({ id: "stepwise:run-1:failed", name: "stepwise/function.failed" })] }]);
  });

  it("an error's retryAt (RetryAfterError) is the time the app chose", () => {
    const d = draft();
    const retryAt = new Date(NOW + 60_000).toISOString();
    applyAnswer(d, env(), untargeted, { type: "error", error: { name: "RetryAfterError", message: "429" }, retriable: true, retryAt });
    expect(d.change.jobs).toEqual([{ kind: "invoke", runId: "run-1", runAt: new Date(retryAt) }]);
  });

  it("ops with nothing new and nothing in flight: the body stalled, and is retried with backoff instead of at once", () => {
    const d = draft([step("a", { output: 1 })]);
    applyAnswer(d, env(), untargeted, { type: "ops", ops: [{ op: "step-ran", ...ref("a"), output: 2 }] });
    expect(written(d)).toEqual({});
    expect(d.change.jobs).toEqual([{ kind: "invoke", runId: "run-1", delayMs: expect.any(Number) }]);
    expect(d.lines.at(-1)?.line).toMatch(/FunctionStalled.*already stored/);
  });

  it("duplicated ops apply once", () => {
    const d = draft();
    const op = { op: "sleep" as const, ...ref("nap"), until: new Date(NOW + 5_000).toISOString() };
    applyAnswer(d, env(), untargeted, { type: "ops", ops: [op, op] });
    settle(d);
    expect(d.change.jobs).toEqual([{ kind: "wake", runId: "run-1", stepId: "nap", runAt: new Date(op.until) }]);
    expect(d.change.run.status).toBe("sleeping");
  });

  it("a step's failure repeated in one answer is one attempt", () => {
    const d = draft();
    const failed = { op: "step-failed" as const, ...ref("charge"), error: { name: "E", message: "declined" }, retriable: true };
    applyAnswer(d, env(), untargeted, { type: "ops", ops: [failed, failed] });
    expect(written(d).charge).toMatchObject({ status: "retrying", attempts: 1 });
  });

  it("a step's own retry policy, reported with its plan, decides a failure the app could not report", () => {
    const d = draft();
    applyAnswer(d, env(), untargeted, { type: "ops", ops: [{ op: "step-planned", ...ref("a"), retries: 0 }, { op: "step-planned", ...ref("b", 1) }] });
    expect(written(d).a).toMatchObject({ status: "planned", retry: { retries: 0 } });
    const again = draft(d.change.steps);
    applyAnswer(again, env(), { targetStepId: "a", startedAt: NOW }, { type: "error", error: { name: "AppError", message: "HTTP 502" }, retriable: true });
    expect(written(again).a).toMatchObject({ status: "failed", attempts: 1, retry: { retries: 0 } });
  });

  it("a step already final is never written again", () => {
    const d = draft([step("a", { output: "first" }), step("b", { status: "planned", position: 1, attempts: 0 })]);
    applyAnswer(d, env(), untargeted, { type: "ops", ops: [{ op: "step-ran", ...ref("a"), output: "second" }, { op: "step-ran", ...ref("b", 1), output: "b" }] });
    expect(Object.keys(written(d))).toEqual(["b"]);
  });

  it("more steps than the limit fails the run with a message that says how to fix it", () => {
    const d = draft([step("a")]);
    applyAnswer(d, env({ limits: { ...env().limits, maxStepsPerRun: 1 } }), untargeted, { type: "ops", ops: [{ op: "step-planned", ...ref("b", 1) }] });
    expect(d.change.run.error?.message).toMatch(/limit is 1 steps per run.*step.invoke/);
  });
});

describe("a targeted answer (a branch or a retry)", () => {
  const target = { targetStepId: "b", startedAt: NOW };
  const planned = () => draft([step("b", { status: "planned", attempts: 0 })]);

  it("stores the branch's result", () => {
    const d = planned();
    applyAnswer(d, env(), target, { type: "ops", ops: [{ op: "step-ran", ...ref("b"), output: 7 }] });
    expect(written(d).b).toMatchObject({ status: "completed", output: 7, attempts: 1 });
  });

  it("a transport failure (502 page, timeout, refused, garbage) is an attempt of that step, never a stranded branch", () => {
    const d = planned();
    applyAnswer(d, env(), target, { type: "error", error: { name: "AppError", message: "HTTP 502: <html>" }, retriable: true });
    expect(written(d).b).toMatchObject({ status: "retrying", attempts: 1 });
    expect(d.change.jobs).toEqual([{ kind: "invoke", runId: "run-1", stepId: "b", delayMs: expect.any(Number) }]);
    expect(d.change.run.attempt).toBeUndefined();
  });

  it("after the step's last attempt it fails for good, and the run is invoked to throw it at the await", () => {
    const d = draft([step("b", { status: "retrying", attempts: 2 })]);
    applyAnswer(d, env(), target, { type: "error", error: { name: "AppError", message: "HTTP 502" }, retriable: true });
    settle(d);
    expect(written(d).b).toMatchObject({ status: "failed", attempts: 3 });
    expect(d.change.jobs).toEqual([{ kind: "invoke", runId: "run-1" }]);
  });

  it("an answer without the target's result counts as a failed attempt", () => {
    const d = planned();
    applyAnswer(d, env(), target, { type: "ops", ops: [] });
    expect(written(d).b).toMatchObject({ status: "retrying", error: { name: "AppAnswerMissingStep" } });
  });

  it("a step settled meanwhile (a duplicate invocation) is left alone", () => {
    const d = draft([step("b", { output: "kept" })]);
    applyAnswer(d, env(), target, { type: "ops", ops: [{ op: "step-ran", ...ref("b"), output: "other" }] });
    expect(d.isEmpty).toBe(true);
  });

  it("uses the function's retries", () => {
    const d = planned();
    applyAnswer(d, env({ fn: fn({ retries: 0 }) }), target, { type: "error", error: { name: "E", message: "x" }, retriable: true });
    expect(written(d).b?.status).toBe("failed");
  });
});

it("an answer for a run that ended is ignored whole", () => {
  const d = draft([], { status: "cancelled" });
  applyAnswer(d, env(), untargeted, { type: "completed", output: 1 });
  expect(d.isEmpty).toBe(true);
});
