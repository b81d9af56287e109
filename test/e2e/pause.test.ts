/**
 * Pausing: a paused run is invoked no further and its timers hold, whichever executor holds
 * them, until it is resumed, when it goes on where it stopped; a paused function's new runs
 * start held (their events kept) and its resume runs or skips them. Over real HTTP, on every
 * store.
 */
import type { FunctionResumed, FunctionView, RunView } from "@stepwise/engine";
import { RetryAfterError, Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, startTwoExecutors, STORE_KINDS, type Stack } from "../support/stack.ts";

const client = new Stepwise({
  id: "pauses",
  dev: true,
  schemas: { "chain/start": z.object({ n: z.number() }), "later/start": z.object({}), "nap/start": z.object({ tag: z.string() }), "ask/start": z.object({ tag: z.string() }), "ask/reply": z.object({ tag: z.string(), ok: z.boolean() }), "job/start": z.object({ n: z.number() }) },
});

/** How many times each run's step after its pause point ran, by tag or number. */
const after = new Map<string, number>();
const bump = (key: string) => after.set(key, (after.get(key) ?? 0) + 1).get(key);

// Long enough that the test pauses it before it wakes, however loaded the machine.
const NAP_MS = 1_000;
const nap = client.createFunction({ id: "nap", triggers: [{ event: "nap/start" }] }, async ({ event, step }) => {
  await step.sleep("nap", NAP_MS);
  return step.run("after", () => bump(event.data.tag));
});
const ask = client.createFunction({ id: "ask", triggers: [{ event: "ask/start" }] }, async ({ event, step }) => {
  const reply = await step.waitForEvent("reply", { event: "ask/reply", match: "data.tag", timeout: "1h" });
  return step.run("after", () => (bump(event.data.tag), reply?.data.ok));
});
const job = client.createFunction({ id: "job", triggers: [{ event: "job/start" }] }, async ({ event, step }) => step.run("work", () => bump(`job-${event.data.n}`)));
/** A chain of checkpointed steps, one slot at a time: the invocation holds a concurrency slot. */
const chain = client.createFunction({ id: "chain", triggers: [{ event: "chain/start" }], concurrency: 1 }, async ({ event, step }) => {
  for (let i = 0; i < 12; i++) await step.run(`link-${i}`, () => new Promise((resolve) => setTimeout(() => resolve(bump(`chain-${event.data.n}`)), 60)));
});
/** A step that asks to be retried an hour later. */
const later = client.createFunction({ id: "later", triggers: [{ event: "later/start" }] }, async ({ step }) =>
  step.run("flaky", () => {
    throw new RetryAfterError("the provider is busy", "1h");
  }),
);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(STORE_KINDS)("pausing runs and functions on %s", (kind) => {
  let stack: Stack;
  const post = async <T = RunView>(path: string, body?: string) => {
    const response = await fetch(`${stack.executor.url}${path}`, { method: "POST", ...(body !== undefined && { body, headers: { "content-type": "application/json" } }) });
    return { status: response.status, body: (await response.json()) as T & { error?: string } };
  };
  const waitFor = async (runId: string, done: (run: RunView) => boolean, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const run = await stack.getRun(runId);
      if (done(run)) return run;
      if (Date.now() > deadline) throw new Error(`run ${runId} did not get there: ${JSON.stringify(run)}`);
      await sleep(25);
    }
  };

  beforeAll(async () => {
    // Each store's suite counts its own runs (the tags repeat across them).
    after.clear();
    stack = await startStack({ store: kind, client, functions: [nap, ask, job, chain, later] });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("holds a paused run's sleep past its time, and goes on at once when resumed", async () => {
    const [eventId] = await stack.send({ name: "nap/start", data: { tag: "sleepy" } });
    const asleep = await stack.waitForRun(eventId!, { status: "sleeping" });
    const paused = await post(`/api/runs/${asleep.id}/pause`);
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({ status: "sleeping", paused: { by: "operator" } });

    await sleep(NAP_MS + 300);
    expect(after.get("sleepy")).toBeUndefined();
    expect(await stack.getRun(asleep.id)).toMatchObject({ status: "sleeping", paused: { by: "operator" } });

    const resumed = await post(`/api/runs/${asleep.id}/resume`);
    expect(resumed.body.paused).toBeUndefined();
    expect(await waitFor(asleep.id, (run) => run.status === "completed")).toMatchObject({ output: 1 });
  });

  it("takes the event a paused run waits for, and goes on with it only once resumed", async () => {
    const [eventId] = await stack.send({ name: "ask/start", data: { tag: "waiting" } });
    const waiting = await stack.waitForRun(eventId!, { status: "waiting" });
    await post(`/api/runs/${waiting.id}/pause`);
    await stack.send({ name: "ask/reply", data: { tag: "waiting", ok: true } });
    const got = await waitFor(waiting.id, (run) => run.steps.find((step) => step.id === "reply")?.status === "completed");
    await sleep(300);
    expect(after.get("waiting")).toBeUndefined();
    expect(got.paused).toBeDefined();

    await post(`/api/runs/${waiting.id}/resume`);
    expect(await waitFor(waiting.id, (run) => run.status === "completed")).toMatchObject({ output: true });
    expect(after.get("waiting")).toBe(1);
  });

  it("cancels a paused run for good, and refuses to pause or resume an ended one", async () => {
    const [eventId] = await stack.send({ name: "nap/start", data: { tag: "doomed" } });
    const asleep = await stack.waitForRun(eventId!, { status: "sleeping" });
    await post(`/api/runs/${asleep.id}/pause`);
    expect((await post(`/api/runs/${asleep.id}/cancel`)).body.status).toBe("cancelled");
    const refused = await post(`/api/runs/${asleep.id}/resume`);
    expect(refused.status).toBe(409);
    expect(refused.body.error).toBe(`Run ${asleep.id} has ended (cancelled): it cannot be resumed`);
    expect((await post(`/api/runs/${asleep.id}/pause`)).status).toBe(409);
    expect((await post("/api/runs/no-such-run/pause")).status).toBe(404);
    await sleep(500);
    expect(after.get("doomed")).toBeUndefined();
  });

  it("holds a paused function's new runs with their events, and runs them when it resumes", async () => {
    const fnId = "pauses-job";
    const paused = await post<FunctionView>(`/api/functions/${fnId}/pause`);
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({ id: fnId, paused: true });
    const listed = (await (await fetch(`${stack.executor.url}/api/functions`)).json()) as { functions: FunctionView[] };
    expect(listed.functions.find((fn) => fn.id === fnId)).toMatchObject({ paused: true, config: { id: "job" } });
    // The app registering again (a deploy) leaves the pause as it is.
    expect((await fetch(stack.appUrl, { method: "PUT" })).ok).toBe(true);

    const ids = await stack.send([1, 2, 3].map((n) => ({ name: "job/start", data: { n } })));
    const held = await Promise.all(ids.map((id) => stack.waitForRun(id, { status: "queued" })));
    for (const run of held) expect(run.paused).toMatchObject({ by: "function" });
    await sleep(300);
    expect([1, 2, 3].map((n) => after.get(`job-${n}`))).toEqual([undefined, undefined, undefined]);

    const resumed = await post<FunctionResumed & { function: FunctionView }>(`/api/functions/${fnId}/resume`, "");
    expect(resumed.body).toMatchObject({ resumed: 3, skipped: 0, function: { paused: false } });
    for (const run of held) expect(await waitFor(run.id, (r) => r.status === "completed")).toMatchObject({ output: 1 });
  });

  it("skips the held runs when the resume says so, and refuses a resume it cannot read", async () => {
    const fnId = "pauses-job";
    await post(`/api/functions/${fnId}/pause`);
    const ids = await stack.send([4, 5].map((n) => ({ name: "job/start", data: { n } })));
    await Promise.all(ids.map((id) => stack.waitForRun(id, { status: "queued" })));
    const bad = await post(`/api/functions/${fnId}/resume`, JSON.stringify({ held: "later" }));
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/held.*"run" \| "skip"/);
    expect((await post(`/api/functions/no-such-fn/resume`, "")).status).toBe(404);

    const resumed = await post<FunctionResumed>(`/api/functions/${fnId}/resume`, JSON.stringify({ held: "skip" }));
    expect(resumed.body).toMatchObject({ resumed: 0, skipped: 2 });
    for (const id of ids) {
      const run = await stack.waitForRun(id);
      expect(run).toMatchObject({ status: "skipped", error: { message: expect.stringMatching(/paused when it started/) } });
    }
    // Not paused any more: a new event runs at once.
    const [next] = await stack.send({ name: "job/start", data: { n: 6 } });
    expect((await stack.waitForRun(next!)).status).toBe("completed");
  });

  it("releases runs held by an ingest that raced the function's resume, as the resume said", async () => {
    const fnId = "pauses-job";
    await post(`/api/functions/${fnId}/pause`);
    const [eventId] = await stack.send({ name: "job/start", data: { n: 7 } });
    const held = await stack.waitForRun(eventId!, { status: "queued" });
    // The resume's own release read its held runs before this one was committed.
    await stack.store.setFunctionPaused(fnId, { resumed: "run" });
    await stack.executor.executor.maintain();
    expect(await waitFor(held.id, (run) => run.status === "completed")).toMatchObject({ output: 1 });
  });

  it("stops a run holding a concurrency slot at its next checkpoint, and holds a paused function's queued backlog", async () => {
    const ids = await stack.send([1, 2, 3].map((n) => ({ name: "chain/start", data: { n } })));
    // One slot: whichever run took it first is the one running; the other two wait for the slot.
    let running = -1;
    await expect.poll(async () => {
      const runs = await Promise.all(ids.map(async (id) => (await stack.runsOf(id))[0]));
      running = runs.findIndex((run) => (run?.steps.length ?? 0) >= 2);
      return running;
    }, { timeout: 15_000 }).toBeGreaterThanOrEqual(0);
    const first = (await stack.runsOf(ids[running]!))[0]!;
    const tag = (index: number) => `chain-${index + 1}`;
    const waiting = [0, 1, 2].filter((index) => index !== running);
    await post(`/api/functions/pauses-chain/pause`);
    await post(`/api/runs/${first.id}/pause`);
    // At most the step out when the pause committed finishes; nothing after it runs.
    await sleep(600);
    const stopped = after.get(tag(running)) ?? 0;
    await sleep(600);
    expect(after.get(tag(running))).toBe(stopped);
    expect(stopped).toBeLessThan(12);
    expect((await stack.getRun(first.id)).status).not.toBe("completed");
    // The two runs queued behind it (waiting for the slot) are held at their start, not run.
    for (const index of waiting) expect(after.get(tag(index))).toBeUndefined();

    // The operator's pause outlasts the function's resume; the held runs go.
    const resumed = await post<FunctionResumed>(`/api/functions/pauses-chain/resume`, "");
    expect(resumed.body.resumed).toBe(2);
    for (const index of waiting) expect((await stack.waitForRun(ids[index]!, { timeoutMs: 20_000 })).status).toBe("completed");
    expect((await stack.getRun(first.id)).paused).toMatchObject({ by: "operator" });
    await post(`/api/runs/${first.id}/resume`);
    expect(await waitFor(first.id, (run) => run.status === "completed", 20_000)).toMatchObject({ status: "completed" });
    expect(after.get(tag(running))).toBe(12);
    // An ended run is not paused any more.
    expect((await stack.getRun(first.id)).paused).toBeUndefined();
  }, 60_000);

  it("keeps a step's retry delay across a pause and a resume", async () => {
    const [eventId] = await stack.send({ name: "later/start", data: {} });
    const run = await waitFor((await stack.waitForRun(eventId!, { status: "running" })).id, (r) => r.steps[0]?.status === "retrying");
    await post(`/api/runs/${run.id}/pause`);
    await post(`/api/runs/${run.id}/resume`);
    await sleep(800);
    expect((await stack.getRun(run.id)).steps[0]).toMatchObject({ status: "retrying", attempts: 1 });
    await post(`/api/runs/${run.id}/cancel`);
  });

  it("holds a run paused through another executor, whose own timer would have woken it", async () => {
    const two = await startTwoExecutors({ store: kind, client, functions: [nap, ask, job] });
    try {
      const [eventId] = await two.send({ name: "nap/start", data: { tag: "elsewhere" } });
      const asleep = await two.waitForRun(eventId!, { status: "sleeping" });
      await two.second.pauseRun(asleep.id);
      await sleep(NAP_MS + 300);
      expect(after.get("elsewhere")).toBeUndefined();
      await two.second.resumeRun(asleep.id);
      await expect.poll(async () => (await two.getRun(asleep.id)).status, { timeout: 10_000 }).toBe("completed");
      expect(after.get("elsewhere")).toBe(1);
    } finally {
      await two.close();
    }
  }, 60_000);
});
