/**
 * Pausing: a paused run is invoked no further and its timers hold, whichever executor holds
 * them, until it is resumed, when it goes on where it stopped; a paused function's new runs
 * start held (their events kept) and its resume runs or skips them. Over real HTTP, on every
 * store.
 */
import type { FunctionResumed, FunctionView, RunView } from "@stepwise/engine";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, startTwoExecutors, STORE_KINDS, type Stack } from "../support/stack.ts";

const client = new Stepwise({
  id: "pauses",
  dev: true,
  schemas: { "nap/start": z.object({ tag: z.string() }), "ask/start": z.object({ tag: z.string() }), "ask/reply": z.object({ tag: z.string(), ok: z.boolean() }), "job/start": z.object({ n: z.number() }) },
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
    stack = await startStack({ store: kind, client, functions: [nap, ask, job] });
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
