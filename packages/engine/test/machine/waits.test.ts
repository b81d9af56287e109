import { describe, expect, it } from "vitest";
import { cancelOnEvent, matcherAccepts, newMatcher, resolveWait } from "../../src/machine/waits.ts";
import { settle } from "../../src/machine/progress.ts";
import { draft, env, NOW, step, trigger, written } from "./fixtures.ts";

const event = (data: unknown, name = "a/paid") => ({ id: `e-${JSON.stringify(data)}`, name, data, ts: NOW });

describe("matchers", () => {
  it("meet an event whose match field equals the trigger's, and whose `if` holds", () => {
    const d = draft();
    const m = newMatcher(d, { stepId: "w", kind: "wait", eventName: "a/paid", match: "data.orderId", if: "async.data.amount > 10" });
    expect(matcherAccepts(m, trigger, event({ orderId: "o-1", amount: 20 }))).toBe(true);
    expect(matcherAccepts(m, trigger, event({ orderId: "o-2", amount: 20 }))).toBe(false);
    expect(matcherAccepts(m, trigger, event({ orderId: "o-1", amount: 5 }))).toBe(false);
    expect(matcherAccepts(m, trigger, event({ orderId: "o-1", amount: 20 }, "a/other"))).toBe(false);
  });

  it("opened on a field the trigger lacks, meet nothing, not even an event with that field null", () => {
    const d = draft();
    const m = newMatcher(d, { stepId: "w", kind: "wait", eventName: "a/paid", match: "data.customerId" });
    expect(matcherAccepts(m, trigger, event({ customerId: null }))).toBe(false);
    expect(matcherAccepts(m, trigger, event({}))).toBe(false);
  });

  it("a frozen null is a value: it meets an explicit null", () => {
    const withNull = { ...trigger, data: { customerId: null } };
    const d = draft([], {}, withNull);
    const m = newMatcher(d, { stepId: "w", kind: "wait", eventName: "a/paid", match: "data.customerId" });
    expect(matcherAccepts(m, withNull, event({ customerId: null }))).toBe(true);
    expect(matcherAccepts(m, withNull, event({}))).toBe(false);
  });
});

describe("an event meets a wait", () => {
  it("the step resolves to the event, its timeout job goes, and the run is invoked again", () => {
    const d = draft([step("w", { kind: "wait", status: "waiting", attempts: 0 })], { status: "waiting" });
    const paid = event({ orderId: "o-1" });
    expect(resolveWait(d, env(), "w", paid)).toBe(true);
    settle(d);
    expect(written(d).w).toMatchObject({ status: "completed", output: paid });
    expect(d.change.dropJobs).toEqual([{ kind: "wait-timeout", stepId: "w" }]);
    expect(d.change.closeMatchers).toEqual(["w"]);
    expect(d.change.jobs).toEqual([{ kind: "invoke", runId: "run-1" }]);
  });

  it("a second event finds the step no longer waiting: one result, never both", () => {
    const d = draft([step("w", { kind: "wait", status: "waiting" })], { status: "waiting" });
    resolveWait(d, env(), "w", event({ n: 1 }));
    expect(resolveWait(d, env(), "w", event({ n: 2 }))).toBe(false);
    expect(written(d).w?.output).toEqual(event({ n: 1 }));
  });

  it("a wait opened and met in one change never reaches the store as a matcher", () => {
    const d = draft([step("w", { kind: "wait", status: "waiting" })]);
    d.openMatcher(newMatcher(d, { stepId: "w", kind: "wait", eventName: "a/paid" }));
    resolveWait(d, env(), "w", event({}));
    expect(d.change.openMatchers).toEqual([]);
    expect(d.change.closeMatchers).toEqual([]);
    expect(d.openedWaits).toEqual([]);
  });
});

describe("cancelOn", () => {
  it("cancels the run: in-flight steps are cancelled, jobs and matchers go, nothing is invoked again", () => {
    const d = draft([step("nap", { kind: "sleep", status: "sleeping" }), step("done", { position: 1 })], { status: "sleeping" });
    d.enqueue({ kind: "wake", stepId: "later" });
    cancelOnEvent(d, env(), event({}, "a/cancelled"));
    settle(d);
    expect(d.change.run).toMatchObject({ status: "cancelled", error: { name: "RunCancelled", message: expect.stringMatching(/a\/cancelled .* matched cancelOn/) } });
    expect(written(d).nap?.status).toBe("cancelled");
    expect(written(d).done).toBeUndefined();
    expect(d.change.jobs).toEqual([]);
    expect(d.change.dropJobs).toBe("all");
  });
});
