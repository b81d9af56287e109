import { describe, expect, it } from "vitest";
import { finish, settleChild } from "../../src/machine/ending.ts";
import { draft, env, fn, step, written } from "./fixtures.ts";

describe("a run ending", () => {
  it("is final: a second ending changes nothing", () => {
    const d = draft();
    finish(d, env(), { status: "completed", output: 1 });
    finish(d, env(), { status: "failed", error: { name: "E", message: "late" } });
    expect(d.change.run).toMatchObject({ status: "completed", output: 1 });
    expect(d.effects).toEqual([]);
  });

  it("tells the parent when the run was started by step.invoke", () => {
    const d = draft([], { parentRunId: "parent", parentStepId: "sub" });
    finish(d, env(), { status: "completed", output: { ok: true } });
    expect(d.effects).toEqual([{ type: "settle-parent", parentRunId: "parent", stepId: "sub", childRunId: "run-1", ending: { status: "completed", output: { ok: true } } }]);
  });

  it("a failure sends the event that runs onFailure, exactly once (its ID derives from the run)", () => {
    const d = draft();
    finish(d, env(), { status: "failed", error: { name: "E", message: "boom" } });
    expect(d.effects).toEqual([{ type: "send", events: [expect.objectContaining({ id: "stepwise:run-1:failed", name: "stepwise/function.failed", data: expect.objectContaining({ runId: "run-1" }) })] }]);
  });

  it("a failing failure handler announces nothing: no endless chain of failures", () => {
    const companion = draft();
    finish(companion, env({ fn: fn({ onFailureOf: "fn" }) }), { status: "failed", error: { name: "E", message: "x" } });
    expect(companion.effects).toEqual([]);
    const handler = draft([], {}, { id: "x:failed", name: "stepwise/function.failed", data: {}, ts: 1 });
    finish(handler, env(), { status: "failed", error: { name: "E", message: "x" } });
    expect(handler.effects).toEqual([]);
  });
});

describe("a child run ended", () => {
  it("settles the parent's invoke step with the child's output, and drops its timeout", () => {
    const d = draft([step("sub", { kind: "invoke", status: "invoking" })], { status: "waiting" });
    settleChild(d, env(), "sub", "child-1", { status: "completed", output: 5 });
    expect(written(d).sub).toMatchObject({ status: "completed", output: 5 });
    expect(d.change.dropJobs).toEqual([{ kind: "invoke-timeout", stepId: "sub" }]);
  });

  it("fails the step with the child's failure or cancellation", () => {
    const failed = draft([step("sub", { kind: "invoke", status: "invoking" })]);
    settleChild(failed, env(), "sub", "child-1", { status: "failed", error: { name: "PaymentError", message: "declined" } });
    expect(written(failed).sub).toMatchObject({ status: "failed", error: { name: "PaymentError", message: "Invoked run child-1 failed: declined" } });
    const cancelled = draft([step("sub", { kind: "invoke", status: "invoking" })]);
    settleChild(cancelled, env(), "sub", "child-1", { status: "cancelled", reason: "by hand" });
    expect(written(cancelled).sub).toMatchObject({ status: "failed", error: { name: "RunCancelled" } });
  });

  it("leaves a step that is no longer invoking (it timed out first) alone", () => {
    const d = draft([step("sub", { kind: "invoke", status: "failed" })]);
    settleChild(d, env(), "sub", "child-1", { status: "completed", output: 5 });
    expect(d.isEmpty).toBe(true);
  });
});
