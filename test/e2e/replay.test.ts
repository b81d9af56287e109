/**
 * Starting runs again, as an operator does after fixing a bug: `POST /api/runs/:id/replay` (a
 * new run from the same event, on the code the app serves now), `/rerun` (a new run that keeps
 * the steps before the one it runs again from, optionally with that step's output edited, so
 * the work before it is not done or paid for twice), and the bulk cancel and replay over the
 * run list's filters, a page per call. Over real HTTP, on every store.
 */
import type { BulkCancelResult, BulkReplayResult, RunView } from "@stepwise/engine";
import { NonRetriableError, Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, STORE_KINDS, type Stack } from "../support/stack.ts";

const client = new Stepwise({
  id: "replays",
  dev: true,
  schemas: {
    "order/placed": z.object({ orderId: z.string() }),
    "agent/asked": z.object({ question: z.string() }),
    "nap/start": z.object({ n: z.number() }),
    "tally/add": z.object({ n: z.number() }),
  },
});

/** What the app's code does now: a test "deploys a fix" by changing it. */
const code = { chargeFails: true };
const calls = { charge: 0, plan: 0, model: 0, act: 0 };
let lastBatch: number[] = [];

const charge = client.createFunction({ id: "charge", triggers: [{ event: "order/placed" }], retries: 0 }, async ({ event, step }) =>
  step.run("charge", () => {
    calls.charge++;
    if (code.chargeFails) throw new NonRetriableError(`card declined for ${event.data.orderId}`);
    return { charged: event.data.orderId };
  }),
);

const agent = client.createFunction({ id: "agent", triggers: [{ event: "agent/asked" }], retries: 0 }, async ({ event, step }) => {
  const plan = await step.run("plan", () => (calls.plan++, `plan for ${event.data.question}`));
  const answer = await step.run("model", () => (calls.model++, `model says: ${plan}`));
  await step.sleep("pause", 1);
  return step.run("act", () => (calls.act++, `acted on "${answer}"`));
});

const napper = client.createFunction({ id: "napper", triggers: [{ event: "nap/start" }] }, async ({ step }) => {
  await step.sleep("long", "1h");
});

const tally = client.createFunction(
  { id: "tally", triggers: [{ event: "tally/add" }], batchEvents: { maxSize: 3, timeout: "10s" } },
  async ({ events, step }) => {
    lastBatch = events.map((event) => event.data.n);
    return step.run("sum", () => events.reduce((sum, event) => sum + event.data.n, 0));
  },
);

describe.each(STORE_KINDS)("replays and reruns on %s", (kind) => {
  let stack: Stack;
  const post = async <T = RunView & { error?: string }>(path: string, body?: unknown) => {
    const response = await fetch(`${stack.executor.url}${path}`, {
      method: "POST",
      ...(body !== undefined && { headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json()) as T & { error?: string } };
  };
  const waitForEnd = async (runId: string, timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const run = await stack.getRun(runId);
      if (["completed", "failed", "cancelled", "skipped"].includes(run.status)) return run;
      if (Date.now() > deadline) throw new Error(`run ${runId} did not end: ${JSON.stringify(run)}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };
  const runCount = async (functionId: string) => {
    const response = await fetch(`${stack.executor.url}/api/runs?function=${functionId}&limit=500`);
    return ((await response.json()) as { runs: unknown[] }).runs.length;
  };

  beforeAll(async () => {
    stack = await startStack({ store: kind, client, functions: [charge, agent, napper, tally] });
  }, 60_000);
  afterAll(async () => stack?.close());
  beforeEach(() => {
    code.chargeFails = true;
    Object.assign(calls, { charge: 0, plan: 0, model: 0, act: 0 });
  });

  it("replays a failed run on the code deployed since, from the same event, leaving the failed run as it was", async () => {
    const [eventId] = await stack.send({ name: "order/placed", data: { orderId: "o-1" } });
    const failed = await stack.waitForRun(eventId!);
    expect(failed.status).toBe("failed");

    code.chargeFails = false;
    const { status, body: replay } = await post(`/api/runs/${failed.id}/replay`);
    expect(status).toBe(200);
    expect(replay).toMatchObject({ functionId: failed.functionId, eventId, replayOf: failed.id });
    expect(replay.id).not.toBe(failed.id);
    const done = await waitForEnd(replay.id);
    expect(done).toMatchObject({ status: "completed", output: { charged: "o-1" } });
    expect(calls.charge).toBe(2);
    // The failed run is history: unchanged.
    expect(await stack.getRun(failed.id)).toMatchObject({ status: "failed", steps: failed.steps });
    // The event lists both runs, the replay marked as one.
    const runs = await stack.runsOf(eventId!);
    expect(runs.map((run) => [run.id, run.replayOf])).toEqual([
      [failed.id, undefined],
      [replay.id, failed.id],
    ]);
  });

  it("reruns from a step, keeping the steps before it: their bodies do not run again", async () => {
    const [eventId] = await stack.send({ name: "agent/asked", data: { question: "q1" } });
    const first = await stack.waitForRun(eventId!);
    expect(first).toMatchObject({ status: "completed", output: 'acted on "model says: plan for q1"' });
    expect(calls).toMatchObject({ plan: 1, model: 1, act: 1 });

    const { status, body: rerun } = await post(`/api/runs/${first.id}/rerun`, { fromStep: "act" });
    expect(status).toBe(200);
    expect(rerun).toMatchObject({ replayOf: first.id, rerunFrom: "act" });
    // Kept from the first run as they were: the plan and the model's answer.
    expect(rerun.steps.map((step) => [step.id, step.status, step.output])).toEqual([
      ["plan", "completed", "plan for q1"],
      ["model", "completed", "model says: plan for q1"],
      ["pause", "completed", null],
    ]);
    expect(await waitForEnd(rerun.id)).toMatchObject({ status: "completed", output: 'acted on "model says: plan for q1"' });
    expect(calls).toMatchObject({ plan: 1, model: 1, act: 2 });
  });

  it("reruns from a step with its output edited: the steps after it see the edit, its body never runs", async () => {
    const [eventId] = await stack.send({ name: "agent/asked", data: { question: "q2" } });
    const first = await stack.waitForRun(eventId!);
    const { status, body: rerun } = await post(`/api/runs/${first.id}/rerun`, { fromStep: "model", output: "a better answer" });
    expect(status).toBe(200);
    // Kept: the plan, and the model's step with its output edited. The answer shows the run as it
    // stands when it is read, and the executor starts the rerun as it commits: the sleep after
    // the edited step may be there already, reached by the rerun itself (its 1 ms sleep, not kept).
    expect(rerun.steps.slice(0, 2).map((step) => [step.id, step.output])).toEqual([
      ["plan", "plan for q2"],
      ["model", "a better answer"],
    ]);
    for (const step of rerun.steps.slice(2)) expect(step.output === undefined || step.output === null || step.output === 'acted on "a better answer"').toBe(true);
    expect(await waitForEnd(rerun.id)).toMatchObject({ status: "completed", output: 'acted on "a better answer"' });
    expect(calls).toMatchObject({ plan: 1, model: 1, act: 2 });
  });

  it("refuses a rerun that names no step of the run, edits a step with no output or is not JSON, and starts nothing", async () => {
    const [eventId] = await stack.send({ name: "agent/asked", data: { question: "q3" } });
    const run = await stack.waitForRun(eventId!);
    const before = await runCount(run.functionId);

    const unknown = await post(`/api/runs/${run.id}/rerun`, { fromStep: "modle" });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error).toBe(`Run ${run.id} has no step "modle": its steps are "plan", "model", "pause", "act"`);
    const sleep = await post(`/api/runs/${run.id}/rerun`, { fromStep: "pause", output: 1 });
    expect(sleep.status).toBe(400);
    expect(sleep.body.error).toMatch(/"pause" is a sleep step, which has no output to replace/);
    const missing = await post(`/api/runs/${run.id}/rerun`, { output: 1 });
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatch(/^Invalid rerun: fromStep: .*send \{ "fromStep"/);
    const extra = await post(`/api/runs/${run.id}/rerun`, { fromStep: "act", from: "x" });
    expect(extra.status).toBe(400);
    const truncated = await post(`/api/runs/${run.id}/rerun`, '{"fromStep": "act"');
    expect(truncated.status).toBe(400);
    expect((await post(`/api/runs/no-such-run/rerun`, { fromStep: "act" })).status).toBe(404);
    expect((await post(`/api/runs/no-such-run/replay`)).status).toBe(404);

    expect(await runCount(run.functionId)).toBe(before);
  });

  it("replays a batch's run with the same events, in the same order", async () => {
    const ids = await stack.send([1, 2, 3].map((n) => ({ name: "tally/add", data: { n } })));
    const first = await stack.waitForRun(ids[0]!);
    expect(first).toMatchObject({ status: "completed", output: 6, eventIds: ids });
    lastBatch = [];
    const { body: replay } = await post(`/api/runs/${first.id}/replay`);
    expect(replay.eventIds).toEqual(ids);
    expect(await waitForEnd(replay.id)).toMatchObject({ status: "completed", output: 6 });
    expect(lastBatch).toEqual([1, 2, 3]);
  });

  it("cancels in bulk a page at a time: every live run the filter selects, and nothing else", async () => {
    const napIds = await stack.send(Array.from({ length: 7 }, (_, n) => ({ name: "nap/start", data: { n } })));
    const naps = await Promise.all(napIds.map((id) => stack.waitForRun(id, { status: "sleeping" })));
    const [otherEvent] = await stack.send({ name: "agent/asked", data: { question: "untouched" } });
    const fn = naps[0]!.functionId;

    const pages: BulkCancelResult[] = [];
    let cursor: string | null = null;
    do {
      const { status, body }: { status: number; body: BulkCancelResult } = await post<BulkCancelResult>(`/api/runs/cancel?function=${fn}&limit=3${cursor ? `&cursor=${cursor}` : ""}`);
      expect(status).toBe(200);
      pages.push(body);
      cursor = body.next;
    } while (cursor && pages.length < 10);
    expect(pages.map((page) => page.cancelled)).toEqual([3, 3, 1]);
    expect(pages.flatMap((page) => page.passed)).toEqual([]);
    for (const nap of naps) expect(await stack.getRun(nap.id)).toMatchObject({ status: "cancelled", error: { message: expect.stringMatching(/cancelled in bulk/) } });
    expect((await stack.waitForRun(otherEvent!)).status).toBe("completed");

    // Nothing live is left to cancel: the next call matches none.
    expect((await post<BulkCancelResult>(`/api/runs/cancel?function=${fn}`)).body).toMatchObject({ matched: 0, cancelled: 0, next: null });
  });

  it("refuses a bulk action with no filter, a status no cancel can stop, or an unknown parameter", async () => {
    const none = await post("/api/runs/cancel");
    expect(none.status).toBe(400);
    expect(none.body.error).toMatch(/^A bulk cancel needs a filter: .*status=queued,running,sleeping,waiting/);
    const ended = await post("/api/runs/cancel?status=completed,failed");
    expect(ended.status).toBe(400);
    expect(ended.body.error).toMatch(/matches no run a cancel can stop/);
    const typo = await post("/api/runs/replay?fucntion=x");
    expect(typo.status).toBe(400);
    expect(typo.body.error).toMatch(/Unknown parameter "fucntion"/);
    expect((await post("/api/runs/replay")).status).toBe(400);
  });

  it("replays in bulk every failed run of a function once, a page at a time", async () => {
    const ids = await stack.send(Array.from({ length: 5 }, (_, n) => ({ name: "order/placed", data: { orderId: `bulk-${n}` } })));
    const failed = await Promise.all(ids.map((id) => stack.waitForRun(id)));
    const since = new Date(Math.min(...failed.map((run) => Date.parse(run.startedAt)))).toISOString();
    code.chargeFails = false;

    const replayed: BulkReplayResult["replayed"] = [];
    let cursor: string | null = null;
    let calls = 0;
    do {
      const { status, body }: { status: number; body: BulkReplayResult } = await post<BulkReplayResult>(`/api/runs/replay?function=${failed[0]!.functionId}&status=failed&since=${since}&limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      expect(status).toBe(200);
      replayed.push(...body.replayed);
      cursor = body.next;
      calls++;
    } while (cursor && calls < 10);
    expect(calls).toBe(3);
    expect(replayed.map((r) => r.replayOf).sort()).toEqual(failed.map((run) => run.id).sort());
    for (const { runId, replayOf } of replayed) {
      expect(await waitForEnd(runId)).toMatchObject({ status: "completed", replayOf });
    }
  });
});

describe("what a run started again takes on", () => {
  const small = new Stepwise({ id: "again", dev: true, schemas: { "again/go": z.object({}), "again/throttled": z.object({}) } });
  const big = small.createFunction({ id: "big", triggers: [{ event: "again/go" }] }, async ({ step }) => {
    await step.run("small", () => "x".repeat(100));
    return step.run("large", () => "y".repeat(3_000));
  });
  const throttled = small.createFunction({ id: "throttled", triggers: [{ event: "again/throttled" }], throttle: { limit: 1, period: "30s" } }, async ({ step }) => step.run("call", () => "called"));
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store: "pglite", client: small, functions: [big, throttled], executor: { limits: { maxRunStateBytes: 4_000 } } });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("refuses a rerun whose kept steps would pass the run's limit of stored results", async () => {
    const [eventId] = await stack.send({ name: "again/go", data: {} });
    const run = await stack.waitForRun(eventId!);
    expect(run.status).toBe("completed");
    const response = await fetch(`${stack.executor.url}/api/runs/${run.id}/rerun`, { method: "POST", body: JSON.stringify({ fromStep: "small", output: "z".repeat(5_000) }) });
    expect(response.status).toBe(413);
    expect(((await response.json()) as { error: string }).error).toMatch(/over a run's limit of 3\.9 KB/);
    // Kept as they were counted when they ran: this one fits, as the run did.
    const fits = await fetch(`${stack.executor.url}/api/runs/${run.id}/rerun`, { method: "POST", body: JSON.stringify({ fromStep: "large" }) });
    expect(fits.status).toBe(200);
  });

  it("takes a start of the function's throttle, as a run from an event does", async () => {
    const [eventId] = await stack.send({ name: "again/throttled", data: {} });
    const first = await stack.waitForRun(eventId!);
    expect(first.status).toBe("completed");
    const replay = (await (await fetch(`${stack.executor.url}/api/runs/${first.id}/replay`, { method: "POST" })).json()) as RunView;
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect((await stack.getRun(replay.id)).status).toBe("queued");
    await fetch(`${stack.executor.url}/api/runs/${replay.id}/cancel`, { method: "POST" });
  });
});
