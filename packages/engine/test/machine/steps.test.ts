import { describe, expect, it } from "vitest";
import { applyAnswer } from "../../src/machine/answer.ts";
import { settle } from "../../src/machine/progress.ts";
import { draft, env, fn, NOW, step, written } from "./fixtures.ts";

const at = { startedAt: NOW };
const ref = (id: string, position = 0) => ({ id, name: id, position });

describe("ops that settle later", () => {
  it("sleep: the step sleeps until the app's time, with a wake job at that time", () => {
    const d = draft();
    const until = new Date(NOW + 2_000).toISOString();
    applyAnswer(d, env(), at, { type: "ops", ops: [{ op: "sleep", ...ref("nap"), until }] });
    settle(d);
    expect(written(d).nap).toMatchObject({ status: "sleeping", wakeAt: new Date(until), kind: "sleep" });
    expect(d.change.jobs).toEqual([{ kind: "wake", runId: "run-1", stepId: "nap", runAt: new Date(until) }]);
    expect(d.change.run.status).toBe("sleeping");
  });

  it("wait: a matcher with the trigger's match value frozen, a timeout job, and a look-back", () => {
    const d = draft();
    const timeoutAt = new Date(NOW + 60_000).toISOString();
    applyAnswer(d, env(), at, { type: "ops", ops: [{ op: "wait", ...ref("paid"), event: "a/paid", timeoutAt, match: "data.orderId" }] });
    expect(d.change.openMatchers).toEqual([
      { runId: "run-1", stepId: "paid", kind: "wait", eventName: "a/paid", matchPath: "data.orderId", matchValue: "o-1", expiresAt: new Date(timeoutAt) },
    ]);
    expect(d.openedWaits).toHaveLength(1);
    expect(d.needsUnit).toBe(true);
    expect(d.change.jobs).toEqual([{ kind: "wait-timeout", runId: "run-1", stepId: "paid", runAt: new Date(timeoutAt) }]);
  });

  it("wait on a field the trigger lacks: a matcher nothing meets, and a warning", () => {
    const d = draft();
    applyAnswer(d, env(), at, { type: "ops", ops: [{ op: "wait", ...ref("w"), event: "a/x", timeoutAt: new Date(NOW + 1).toISOString(), match: "data.missing" }] });
    expect(d.change.openMatchers[0]).toMatchObject({ matchPath: "data.missing" });
    expect(d.change.openMatchers[0]).not.toHaveProperty("matchValue");
    expect(d.lines.some((l) => l.level === "warn" && /has no data.missing/.test(l.line))).toBe(true);
  });

  it("send: the events are validated like the events API, get IDs derived from run and step, and are stored as an effect", () => {
    const d = draft();
    applyAnswer(d, env(), at, { type: "ops", ops: [{ op: "send", ...ref("notify"), events: [{ name: "a/sent", data: { n: 1 } }, { name: "a/sent", id: "mine" }] }] });
    expect(written(d).notify).toMatchObject({ status: "completed", output: { ids: ["stepwise:run-1:notify:0", "mine"] } });
    expect(d.effects).toEqual([{ type: "send", events: [expect.objectContaining({ id: "stepwise:run-1:notify:0", data: { n: 1 } }), expect.objectContaining({ id: "mine", data: {} })] }]);
  });

  it.each([
    ["a reserved name", { name: "stepwise/function.failed", data: {} }, /reserved/],
    ["data that is not an object", { name: "a/b", data: [1] }, /JSON object/],
    ["a fractional ts", { name: "a/b", ts: 1.5 }, /whole number/],
    ["a NUL in the name", { name: "a\u0000b" }, /NUL/],
    ["two events with one id", [{ name: "a/b", id: "x" }, { name: "a/c", id: "x" }], /also the id/],
    ["an id in the executor's derived namespace", { name: "a/b", id: "stepwise:run-2:notify:0" }, /reserved for the IDs the executor derives/],
    ["data over the event size limit", { name: "a/b", data: { blob: "x".repeat(600 * 1024) } }, /limit is 512 KB/],
    ["an id longer than 256 characters", { name: "a/b", id: "x".repeat(257) }, /at most 256/],
  ])("send with %s fails the step for good, with a clear error, and sends nothing", (_, events, message) => {
    const d = draft();
    applyAnswer(d, env(), at, { type: "ops", ops: [{ op: "send", ...ref("bad"), events: (Array.isArray(events) ? events : [events]) as never }] });
    expect(written(d).bad).toMatchObject({ status: "failed", error: { name: "InvalidEvent", message: expect.stringMatching(message) } });
    expect(d.effects).toEqual([]);
  });

  it("a wait on one of the executor's own events fails the step for good and opens nothing", () => {
    const d = draft();
    const timeoutAt = new Date(NOW + 60_000).toISOString();
    applyAnswer(d, env(), at, { type: "ops", ops: [{ op: "wait", ...ref("spy"), event: "stepwise/function.failed", timeoutAt }] });
    expect(written(d).spy).toMatchObject({ status: "failed", error: { name: "InvalidWait", message: expect.stringMatching(/executor's own/) } });
    expect(d.change.openMatchers).toEqual([]);
  });

  it("invoke: the child is started as an effect, with an event ID derived from run and step", () => {
    const child = fn({ id: "child" });
    const target = { ...child, id: "app-child", localId: "child" };
    const d = draft();
    const timeoutAt = new Date(NOW + 30_000).toISOString();
    applyAnswer(d, env({}, [target]), at, { type: "ops", ops: [{ op: "invoke", ...ref("sub"), functionId: "app-child", data: { x: 1 }, timeoutAt }] });
    expect(written(d).sub).toMatchObject({ status: "invoking", wakeAt: new Date(timeoutAt) });
    expect(d.effects).toEqual([{ type: "start-child", fn: target, event: expect.objectContaining({ id: "stepwise:run-1:sub:invoke", data: { x: 1 } }), parent: { runId: "run-1", stepId: "sub" } }]);
    expect(d.change.jobs).toEqual([{ kind: "invoke-timeout", runId: "run-1", stepId: "sub", runAt: new Date(timeoutAt) }]);
  });

  it.each([
    ["into an app with a key of its own", new Set(["billing"])],
    ["out of an app with a key of its own", new Set(["app"])],
  ])("invoke does not cross apps %s: the step fails for good and nothing starts", (_, isolatedApps) => {
    const other = { ...fn({ id: "charge" }), id: "billing-charge", appId: "billing", localId: "charge" };
    const d = draft();
    applyAnswer(d, env({ isolatedApps }, [other]), at, { type: "ops", ops: [{ op: "invoke", ...ref("sub"), functionId: "billing-charge", data: {} }] });
    expect(written(d).sub).toMatchObject({ status: "failed", error: { name: "InvokeNotAllowed" } });
    expect(d.effects).toEqual([]);
  });

  it("invoke crosses apps that share the signing key, and stays free within an isolated app", () => {
    const other = { ...fn({ id: "charge" }), id: "billing-charge", appId: "billing", localId: "charge" };
    const sibling = { ...fn({ id: "child" }), id: "app-child", appId: "app", localId: "child" };
    for (const [target, isolatedApps] of [[other, new Set<string>()], [sibling, new Set(["app"])]] as const) {
      const d = draft();
      applyAnswer(d, env({ isolatedApps }, [target]), at, { type: "ops", ops: [{ op: "invoke", ...ref("sub"), functionId: target.id, data: {} }] });
      expect(written(d).sub).toMatchObject({ status: "invoking" });
    }
  });

  it("invoke of an unknown function fails the step for good", () => {
    const d = draft();
    applyAnswer(d, env(), at, { type: "ops", ops: [{ op: "invoke", ...ref("sub"), functionId: "nope" }] });
    expect(written(d).sub).toMatchObject({ status: "failed", error: { name: "FunctionNotFound" } });
  });
});

describe("step results", () => {
  it("an output over the step limit, or one that would pass the run's state limit, fails the step for good", () => {
    const big = draft();
    applyAnswer(big, env({ limits: { ...env().limits, maxStepOutputBytes: 10 } }), at, { type: "ops", ops: [{ op: "step-ran", ...ref("s"), output: "x".repeat(20) }] });
    expect(written(big).s).toMatchObject({ status: "failed", error: { name: "StepOutputTooLarge" } });
    const full = draft([], { stateBytes: 95 });
    applyAnswer(full, env({ limits: { ...env().limits, maxRunStateBytes: 100 } }), at, { type: "ops", ops: [{ op: "step-ran", ...ref("s"), output: "x".repeat(20) }] });
    expect(written(full).s).toMatchObject({ status: "failed", error: { name: "RunStateTooLarge" } });
  });

  it("an output nested 5,000 levels deep (readable, but not writable as JSON) fails the step for good, not the executor", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 5_000; i++) deep = [deep];
    const d = draft();
    applyAnswer(d, env(), at, { type: "ops", ops: [{ op: "step-ran", ...ref("s"), output: deep }] });
    expect(written(d).s).toMatchObject({ status: "failed", error: { name: "StepOutputNotStorable", message: expect.stringMatching(/nested 1001 levels deep; the limit is 1000/) } });
    const returned = draft();
    applyAnswer(returned, env(), at, { type: "completed", output: deep });
    expect(returned.change.run).toMatchObject({ status: "failed", error: { name: "OutputNotStorable" } });
  });

  it("counts each stored output toward the run's state", () => {
    const d = draft([], { stateBytes: 10 });
    applyAnswer(d, env(), at, { type: "ops", ops: [{ op: "step-ran", ...ref("s"), output: "abc" }] });
    expect(d.change.run.stateBytes).toBe(15);
  });

  it("a long error is clipped before it is stored and sent back on every invocation", () => {
    const d = draft([step("b", { status: "planned", attempts: 0 })]);
    applyAnswer(d, env(), { targetStepId: "b", startedAt: NOW }, { type: "ops", ops: [{ op: "step-failed", ...ref("b"), error: { name: "E", message: "m".repeat(100_000) }, retriable: false }] });
    expect(written(d).b!.error!.message.length).toBeLessThan(20_000);
  });

  it("step-ran for a new step of a run that was queued marks it running", () => {
    const d = draft([], { status: "queued" });
    applyAnswer(d, env(), at, { type: "ops", ops: [{ op: "step-ran", ...ref("s"), output: 1 }] });
    settle(d);
    expect(d.change.run.status).toBe("running");
    expect(d.change.jobs).toEqual([{ kind: "invoke", runId: "run-1" }]);
  });
});
