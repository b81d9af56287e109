/**
 * `timeouts`: a run that has not finished `finish` after its event is cancelled, with a reason
 * that names the timeout, and no step of it runs after; a run that waited in the queue past
 * `start` is cancelled before any of it runs; a `cancelOn` rule with a `timeout` listens only
 * that long after the run started. Over real HTTP on every store.
 */
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const ran = new Map<string, string[]>();
const record = (key: string, step: string) => ran.set(key, [...(ran.get(key) ?? []), step]);

const client = new Stepwise({ id: "timeouts", dev: true });
const slow = client.createFunction({ id: "slow", triggers: [{ event: "t/slow" }], timeouts: { finish: "1s" } }, async ({ event, step }) => {
  const key = (event.data as { key: string }).key;
  await step.run("before", () => record(key, "before"));
  await step.sleep("long", "5s");
  await step.run("after", () => record(key, "after"));
  return "finished";
});
const quick = client.createFunction({ id: "quick", triggers: [{ event: "t/quick" }], timeouts: { finish: 60_000 } }, async ({ step }) => step.run("only", () => "done"));
// Holds the executor's only lane for 1.5 s, so the run below waits in the queue.
let hogStarted: () => void = () => {};
const hog = client.createFunction({ id: "hog", triggers: [{ event: "t/hog" }] }, async ({ step }) =>
  step.run("hold", () => {
    hogStarted();
    return new Promise((resolve) => setTimeout(() => resolve("held"), 1_500));
  }),
);
const fresh = client.createFunction({ id: "fresh", triggers: [{ event: "t/fresh" }], timeouts: { start: "500ms" } }, async ({ event, step }) =>
  step.run("notify", () => record((event.data as { key: string }).key, "notify")),
);
// Cancellable by a t/stop event with its key, but only in the first 400 ms of the run.
const stoppable = client.createFunction(
  { id: "stoppable", triggers: [{ event: "t/stoppable" }], cancelOn: [{ event: "t/stop", match: "data.key", timeout: "400ms" }] },
  async ({ event, step }) => {
    const key = (event.data as { key: string }).key;
    await step.sleep("wait", "800ms");
    await step.run("after", () => record(key, "after"));
    return "finished";
  },
);

describe.each(STORE_KINDS)("timeouts on %s", (store) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store, client, functions: [slow, quick, hog, fresh, stoppable], executor: { concurrency: 1 } });
  });
  afterAll(async () => stack?.close());

  it("cancels a run still going at timeouts.finish, naming the timeout, and runs none of it after", async () => {
    const key = `slow-${store}`;
    const [id] = await stack.send({ name: "t/slow", data: { key } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("cancelled");
    expect(run.error?.message).toBe("timeouts.finish: the run did not finish within 1s of its event");
    const took = new Date(run.endedAt!).getTime() - new Date(run.startedAt).getTime();
    // The timer is due 1 s after the start of the transaction that created the run (store clock);
    // startedAt is the executor's clock some milliseconds into that transaction: a few, and 66 on
    // a loaded CI run (Postgres + Redis). A timer fired early would be hundreds of ms short.
    expect(took).toBeGreaterThanOrEqual(1_000 - 150);
    expect(took).toBeLessThan(4_000);
    expect(run.steps.find((s) => s.name === "long")?.status).toBe("cancelled");
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(ran.get(key)).toEqual(["before"]);
  });

  it("leaves a run that finishes in time alone", async () => {
    const [id] = await stack.send({ name: "t/quick", data: {} });
    expect(await stack.waitForRun(id!)).toMatchObject({ status: "completed", output: "done" });
  });

  it("cancels a run that waited in the queue past timeouts.start before any of it runs", async () => {
    const key = `fresh-${store}`;
    const holding = new Promise<void>((resolve) => (hogStarted = resolve));
    const [hogId] = await stack.send({ name: "t/hog", data: {} });
    await holding;
    const [id] = await stack.send({ name: "t/fresh", data: { key } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("cancelled");
    expect(run.error?.message).toMatch(/^timeouts\.start: the run waited \d+(\.\d+)?m?s to start, over its function's 500ms$/);
    expect(run.steps).toEqual([]);
    expect(ran.get(key)).toBeUndefined();
    expect((await stack.waitForRun(hogId!)).output).toBe("held");
    // Sent when a lane is free, the same function starts as usual.
    const [later] = await stack.send({ name: "t/fresh", data: { key: `${key}-later` } });
    expect((await stack.waitForRun(later!)).status).toBe("completed");
  });

  it("cancels on a cancelOn event within its timeout, and not after", async () => {
    const [early, late] = [`early-${store}`, `late-${store}`];
    const [earlyId, lateId] = await stack.send([
      { name: "t/stoppable", data: { key: early } },
      { name: "t/stoppable", data: { key: late } },
    ]);
    await stack.send({ name: "t/stop", data: { key: early } });
    await new Promise((resolve) => setTimeout(resolve, 600));
    await stack.send({ name: "t/stop", data: { key: late } });
    const [a, b] = [await stack.waitForRun(earlyId!), await stack.waitForRun(lateId!)];
    expect(a.status).toBe("cancelled");
    expect(a.error?.message).toMatch(/matched cancelOn/);
    expect(b).toMatchObject({ status: "completed", output: "finished" });
    expect(ran.get(early)).toBeUndefined();
    expect(ran.get(late)).toEqual(["after"]);
  });

  it("refuses a timeout that is not a duration, naming the function and the option", () => {
    expect(() => client.createFunction({ id: "f", triggers: [{ event: "t/x" }], cancelOn: [{ event: "t/stop", timeout: "later" }] }, () => {})).toThrow(
      /createFunction\("f"\): cancelOn\.0\.timeout: Invalid duration "later"/,
    );
    expect(() => client.createFunction({ id: "f", triggers: [{ event: "t/x" }], timeouts: { finish: "soon" } }, () => {})).toThrow(
      /createFunction\("f"\): timeouts\.finish: Invalid duration "soon"/,
    );
    expect(() => client.createFunction({ id: "f", triggers: [{ event: "t/x" }], timeouts: { start: 0 } }, () => {})).toThrow(/timeouts\.start: must be longer than 0/);
    expect(() => client.createFunction({ id: "f", triggers: [{ event: "t/x" }], timeouts: { finish: "20000000w" } }, () => {})).toThrow(/timeouts\.finish: must be at most a year/);
  });
});
