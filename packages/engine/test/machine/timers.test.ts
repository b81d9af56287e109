import { describe, expect, it } from "vitest";
import { fireTimer } from "../../src/machine/timers.ts";
import { settle } from "../../src/machine/progress.ts";
import { draft, env, NOW, step, written } from "./fixtures.ts";

describe("timers", () => {
  it("a sleep ends: the step completes and the run is invoked again", () => {
    const d = draft([step("nap", { kind: "sleep", status: "sleeping", attempts: 0, wakeAt: new Date(NOW - 20) })], { status: "sleeping" });
    fireTimer(d, env(), { kind: "wake", stepId: "nap" });
    settle(d);
    expect(written(d).nap).toMatchObject({ status: "completed", output: null });
    expect(d.change.jobs).toEqual([{ kind: "invoke", runId: "run-1" }]);
    expect(d.change.run.status).toBe("running");
    expect(d.lines[0]?.line).toMatch(/woke up \(20ms after its time\)/);
  });

  it("a wait times out: it resolves to null and its matcher closes", () => {
    const d = draft([step("w", { kind: "wait", status: "waiting", attempts: 0 })], { status: "waiting" });
    fireTimer(d, env(), { kind: "wait-timeout", stepId: "w" });
    expect(written(d).w).toMatchObject({ status: "completed", output: null });
    expect(d.change.closeMatchers).toEqual(["w"]);
  });

  it("an invoked child takes too long: the invoke step fails", () => {
    const d = draft([step("sub", { kind: "invoke", status: "invoking", attempts: 0 })], { status: "waiting" });
    fireTimer(d, env(), { kind: "invoke-timeout", stepId: "sub" });
    expect(written(d).sub).toMatchObject({ status: "failed", error: { name: "InvokeTimeout" } });
  });

  it("is a no-op when its step moved on, or the run ended", () => {
    const moved = draft([step("w", { kind: "wait", status: "completed" })]);
    fireTimer(moved, env(), { kind: "wait-timeout", stepId: "w" });
    expect(moved.isEmpty).toBe(true);
    const ended = draft([step("nap", { kind: "sleep", status: "sleeping" })], { status: "cancelled" });
    fireTimer(ended, env(), { kind: "wake", stepId: "nap" });
    expect(ended.isEmpty).toBe(true);
  });

  it("one sleep ending while another branch still sleeps leaves the run sleeping, with no invocation", () => {
    const d = draft([
      step("a", { kind: "sleep", status: "sleeping" }),
      step("b", { kind: "sleep", status: "sleeping", position: 1 }),
    ], { status: "sleeping" });
    fireTimer(d, env(), { kind: "wake", stepId: "a" });
    settle(d);
    expect(d.change.jobs).toEqual([]);
    expect(d.change.run.status).toBeUndefined();
  });
});
