import { describe, expect, it } from "vitest";
import { expectedJobs, liveStatus, settle } from "../../src/machine/progress.ts";
import { newRun } from "../../src/machine/start.ts";
import { draft, fn, NOW, run, step, trigger } from "./fixtures.ts";

describe("liveStatus", () => {
  it("is running when nothing is in flight or a step is planned or retrying", () => {
    expect(liveStatus([step("a")])).toBe("running");
    expect(liveStatus([step("a", { status: "sleeping" }), step("b", { status: "planned" })])).toBe("running");
    expect(liveStatus([step("a", { status: "retrying" })])).toBe("running");
  });

  it("is waiting for an event or a child run before sleeping", () => {
    expect(liveStatus([step("a", { status: "sleeping" }), step("b", { status: "waiting" })])).toBe("waiting");
    expect(liveStatus([step("a", { status: "invoking" })])).toBe("waiting");
    expect(liveStatus([step("a", { status: "sleeping" }), step("b")])).toBe("sleeping");
  });
});

describe("settle", () => {
  it("queues one invocation however many steps settled in the change", () => {
    const d = draft([step("a", { status: "waiting" }), step("b", { status: "sleeping", position: 1 })], { status: "waiting" });
    d.saveStep(step("a"));
    d.saveStep(step("b", { position: 1 }));
    settle(d);
    settle(d);
    expect(d.change.jobs).toEqual([{ kind: "invoke", runId: "run-1" }]);
  });

  it("does nothing when no step changed", () => {
    const d = draft([step("a")], { status: "running" });
    settle(d);
    expect(d.isEmpty).toBe(true);
  });
});

describe("expectedJobs", () => {
  it("names the job each step in flight needs, or one invocation when none is", () => {
    const wakeAt = new Date(NOW + 1_000);
    expect(expectedJobs({ run: run(), event: trigger, steps: [step("a")] })).toEqual([{ kind: "invoke" }]);
    expect(
      expectedJobs({
        run: run(),
        event: trigger,
        steps: [
          step("p", { status: "planned" }),
          step("s", { status: "sleeping", wakeAt }),
          step("w", { status: "waiting", wakeAt }),
          step("i", { status: "invoking" }),
        ],
      }),
    ).toEqual([{ kind: "invoke", stepId: "p" }, { kind: "wake", stepId: "s", runAt: wakeAt }, { kind: "wait-timeout", stepId: "w", runAt: wakeAt }]);
    expect(expectedJobs({ run: run({ status: "completed" }), event: trigger, steps: [] })).toEqual([]);
  });
});

describe("a new run", () => {
  it("is queued with its first invocation and its cancelOn matchers", () => {
    const d = newRun(fn({ cancelOn: [{ event: "a/cancel", match: "data.orderId" }] }), trigger, { now: NOW });
    expect(d.run).toMatchObject({ status: "queued", eventId: trigger.id, version: 0, stateBytes: 0 });
    expect(d.change.jobs).toEqual([{ kind: "invoke", runId: d.run.id }]);
    expect(d.change.openMatchers).toEqual([{ runId: d.run.id, stepId: "cancel:0", kind: "cancel", eventName: "a/cancel", matchPath: "data.orderId", matchValue: "o-1" }]);
    expect(d.openedWaits).toEqual([]);
  });
});
