/**
 * Checkpointing end to end, with its fence: consecutive `step.run`s go on in one invocation,
 * each result durable before the next step starts; and an invocation that lost its lease, whose
 * run was cancelled or finished, or whose step is already stored, is refused and stops at once.
 * Each race here would duplicate a committed step or run a step after a cancel without the fence.
 */
import { CHECKPOINT_ROUTE, DEV_SIGNING_KEY, HEADERS, MAX_CHECKPOINT_BATCH, PROTOCOL_VERSION, sign, type CheckpointBatch, type CheckpointRequest } from "@stepwise/protocol";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { setSinglesAfterRefusal, SINGLES_AFTER_REFUSAL_MS } from "../../packages/sdk/src/checkpoint-sender.ts";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

type Sql = { query(text: string, params?: unknown[]): Promise<Array<Record<string, unknown>>> };

const bodies = new Map<string, number>();
const count = (key: string) => bodies.set(key, (bodies.get(key) ?? 0) + 1).get(key)!;
const Id = z.object({ id: z.string() });

/**
 * What the test does to the app's checkpoint requests (the network between app and executor);
 * "slow" holds each 30 ms; "no-batches" also answers each batch as an executor that predates
 * batches does (400, nothing written), as one may behind the same URL in a rolling deploy.
 */
let checkpointFault: "none" | "502" | "refuse" | "lose-answer" | "200-page" | "slow" | "no-batches" = "none";
/** Batches answered 400 under "no-batches". */
let refusedBatches = 0;
const checkpoints: CheckpointRequest[] = [];
/** The size of each batch the app sent. */
const batches: number[] = [];

const client = new Stepwise({
  id: "checkpoints",
  dev: true,
  schemas: { "cp/chain": Id, "cp/cancel-a": Id, "cp/cancel-b": Id, "cp/stolen": Id, "cp/overwrite": Id, "cp/off": Id, "cp/batch": Id },
  fetch: async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    if (!url.endsWith(CHECKPOINT_ROUTE)) return fetch(input, init);
    const sent = JSON.parse(String(init?.body)) as CheckpointRequest | CheckpointBatch;
    if ("checkpoints" in sent) batches.push(sent.checkpoints.length);
    checkpoints.push(...("checkpoints" in sent ? sent.checkpoints : [sent]));
    if (checkpointFault === "slow" || checkpointFault === "no-batches") await new Promise((resolve) => setTimeout(resolve, 30));
    if (checkpointFault === "no-batches" && "checkpoints" in sent) {
      refusedBatches++;
      return Response.json({ error: "Not a Stepwise checkpoint: run.appId (or a batch's appId) is missing" }, { status: 400 });
    }
    if (checkpointFault === "502") return new Response("<html><h1>502 Bad Gateway</h1></html>", { status: 502, headers: { "content-type": "text/html" } });
    // Something in front of the executor (a login page, a catch-all) answering 200: not a commit.
    if (checkpointFault === "200-page") return new Response("<html><body>Welcome</body></html>", { status: 200, headers: { "content-type": "text/html" } });
    if (checkpointFault === "refuse") throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) });
    const answer = await fetch(input, init);
    // Committed, but the answer is lost on the way back: the app cannot know.
    if (checkpointFault === "lose-answer") throw new TypeError("fetch failed", { cause: new Error("socket hang up") });
    return answer;
  },
});

let stack: Stack;
const sql = () => (stack.store as unknown as { client: Sql }).client;
const storedSteps = async (runId: string) => (await stack.getRun(runId)).steps.map((s) => ({ id: s.id, status: s.status, output: s.output }));
/** Sends `checkpoint` to the executor as an app would, signed with the dev key. */
const postCheckpoint = async (checkpoint: unknown) => {
  const body = JSON.stringify(checkpoint);
  return fetch(`${stack.executor.url}${CHECKPOINT_ROUTE}`, {
    method: "POST",
    headers: { "content-type": "application/json", [HEADERS.signature]: await sign(DEV_SIGNING_KEY, { method: "POST", target: CHECKPOINT_ROUTE, body }) },
    body,
  });
};

const chain = client.createFunction({ id: "chain", triggers: [{ event: "cp/chain" }] }, async ({ event, step, runId }) => {
  const a = await step.run("a", () => (count(`${event.data.id}:a`), 1));
  // The previous result is durable before this step's code starts.
  const b = await step.run("b", async () => (count(`${event.data.id}:b`), (await storedSteps(runId)).find((s) => s.id === "a")?.status));
  const c = await step.run("c", () => (count(`${event.data.id}:c`), a + 2));
  return { a, b, c };
});

const off = client.createFunction({ id: "off", triggers: [{ event: "cp/off" }], checkpointing: false }, async ({ step }) => {
  const a = await step.run("a", () => 1);
  const b = await step.run("b", () => a + 1);
  return step.run("c", () => b + 1);
});

const cancelledInA = client.createFunction({ id: "cancel-a", triggers: [{ event: "cp/cancel-a" }] }, async ({ event, step, runId }) => {
  await step.run("a", async () => {
    count(`${event.data.id}:a`);
    await fetch(`${stack.executor.url}/api/runs/${runId}/cancel`, { method: "POST" });
    return "a";
  });
  await step.run("b", () => count(`${event.data.id}:b`));
  return "finished";
});

const cancelledInB = client.createFunction({ id: "cancel-b", triggers: [{ event: "cp/cancel-b" }] }, async ({ event, step, runId }) => {
  await step.run("a", () => (count(`${event.data.id}:a`), "a"));
  await step.run("b", async () => {
    count(`${event.data.id}:b`);
    await fetch(`${stack.executor.url}/api/runs/${runId}/cancel`, { method: "POST" });
    return "b";
  });
  await step.run("c", () => count(`${event.data.id}:c`));
  return "finished";
});

/** Another worker takes the job over while step "a" runs (its lease ran out: a stall, a GC pause). */
const stolen = client.createFunction({ id: "stolen", triggers: [{ event: "cp/stolen" }] }, async ({ event, step, runId }) => {
  await step.run("a", async () => {
    if (count(`${event.data.id}:a`) === 1) {
      await sql().query("UPDATE jobs SET locked_by = 'another-executor', claims = claims + 1, locked_until = now() + interval '1 hour' WHERE run_id = $1", [runId]);
    }
    return "a";
  });
  await step.run("b", () => count(`${event.data.id}:b`));
  return "finished";
});

/** While step "b" runs, a checkpoint of "a" (already committed) arrives again with another output. */
const overwrite = client.createFunction({ id: "over-write", triggers: [{ event: "cp/overwrite" }] }, async ({ step, runId }) => {
  await step.run("a", () => "first");
  const answer = await step.run("b", async () => {
    const [first] = checkpoints.filter((c) => c.run.id === runId && c.step.id === "a");
    const response = await postCheckpoint({ ...first!, step: { ...first!.step, output: "second" } });
    // The same run under another app's name whose global ID collides ("checkpoints" + "over-write" is
    // also "checkpoints-over" + "write"):
    // signed, with this invocation's own lease token, for a new step. The run is not that app's.
    const other = await postCheckpoint({ ...first!, run: { ...first!.run, appId: "checkpoints-over", functionId: "write" }, step: { ...first!.step, id: "z", name: "z", position: 7 } });
    return { status: response.status, body: (await response.json()) as unknown, otherApp: other.status };
  });
  return answer;
});

/**
 * While step "b" runs, posts one batch of checkpoints by hand: a new step "x" under this
 * invocation's own lease (committed), step "a" again with another output (already stored), the
 * same under another app's name, and one malformed. Each is answered as if it came alone.
 */
const batchByHand = client.createFunction({ id: "batch", triggers: [{ event: "cp/batch" }] }, async ({ step, runId }) => {
  await step.run("a", () => "first");
  return step.run("b", async () => {
    const [first] = checkpoints.filter((c) => c.run.id === runId && c.step.id === "a");
    const batch = {
      version: PROTOCOL_VERSION,
      appId: "checkpoints",
      checkpoints: [
        { ...first!, step: { ...first!.step, id: "x", name: "x", position: 5, output: "by hand" } },
        { ...first!, step: { ...first!.step, output: "second" } },
        { ...first!, run: { ...first!.run, appId: "another-app" }, step: { ...first!.step, id: "y", name: "y", position: 6 } },
        { run: { appId: "checkpoints" }, token: 5 },
      ],
    };
    const response = await postCheckpoint(batch);
    return { status: response.status, body: (await response.json()) as unknown };
  });
});

describe.each(STORE_KINDS)("checkpointing on %s", (kind) => {
  const invocations = new Map<string, number>();
  beforeAll(async () => {
    stack = await startStack({
      store: kind,
      client,
      functions: [chain, off, cancelledInA, cancelledInB, stolen, overwrite, batchByHand],
      // Short leases: with the queue in Redis, the job the test gives back in the record is free there soon too.
      executor: { leaseMs: 2_000 },
      intercept: async (request, app) => {
        if (request.method === "POST") {
          const fnId = new URL(request.url).searchParams.get("fnId")!;
          invocations.set(fnId, (invocations.get(fnId) ?? 0) + 1);
        }
        return app(request);
      },
    });
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
  });
  beforeEach(() => {
    checkpointFault = "none";
    invocations.clear();
    batches.length = 0;
    refusedBatches = 0;
  });

  it("runs consecutive steps in one invocation, each committed before the next starts", async () => {
    const [id] = await stack.send({ name: "cp/chain", data: { id: `${kind}-1` } });
    const run = await stack.waitForRun(id!);
    expect(run).toMatchObject({ status: "completed", output: { a: 1, b: "completed", c: 3 } });
    expect(invocations.get("chain")).toBe(1);
    expect([bodies.get(`${kind}-1:a`), bodies.get(`${kind}-1:b`), bodies.get(`${kind}-1:c`)]).toEqual([1, 1, 1]);
    expect(stack.log.lines.filter((line) => line.includes(run.id) && line.endsWith("(checkpoint)"))).toHaveLength(3);
  });

  it("checkpointing: false invokes once per step", async () => {
    const [id] = await stack.send({ name: "cp/off", data: { id: kind } });
    expect(await stack.waitForRun(id!)).toMatchObject({ status: "completed", output: 3 });
    expect(invocations.get("off")).toBe(4);
  });

  it("a cancel during the first step is final: its checkpoint is refused and no later step runs", async () => {
    const [id] = await stack.send({ name: "cp/cancel-a", data: { id: `${kind}-cancel-a` } });
    const run = await stack.waitForRun(id!);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(run.status).toBe("cancelled");
    expect(bodies.get(`${kind}-cancel-a:a`)).toBe(1);
    expect(bodies.get(`${kind}-cancel-a:b`)).toBeUndefined();
    expect(await storedSteps(run.id)).toEqual([]);
    expect(stack.log.lines.some((line) => line.includes(run.id) && line.includes("checkpoint refused, the run has ended"))).toBe(true);
  });

  it("a cancel between checkpoints is final: the step before it stays, no step after it runs", async () => {
    const [id] = await stack.send({ name: "cp/cancel-b", data: { id: `${kind}-cancel-b` } });
    const run = await stack.waitForRun(id!);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(run.status).toBe("cancelled");
    expect(bodies.get(`${kind}-cancel-b:c`)).toBeUndefined();
    expect(await storedSteps(run.id)).toEqual([{ id: "a", status: "completed", output: "a" }]);
  });

  it("an invocation whose lease another worker took stops at once; the new holder finishes the run", async () => {
    const key = `${kind}-stolen`;
    const [id] = await stack.send({ name: "cp/stolen", data: { id: key } });
    const [queued] = await stack.runsOf(id!);
    const deadline = Date.now() + 10_000;
    while (!bodies.get(`${key}:a`) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    // The old invocation goes no further than its refused checkpoint: "b" does not run while another holds the job.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(bodies.get(`${key}:b`)).toBeUndefined();
    expect(await storedSteps(queued!.id)).toEqual([]);
    // The other worker gives the job up (its lease runs out): this executor takes it and finishes.
    await sql().query("UPDATE jobs SET locked_until = now() - interval '1 second' WHERE run_id = $1", [queued!.id]);
    const run = await stack.waitForRun(id!, { timeoutMs: 20_000 });
    expect(run).toMatchObject({ status: "completed", output: "finished" });
    expect(bodies.get(`${key}:a`)).toBe(2);
    expect(bodies.get(`${key}:b`)).toBe(1);
  });

  it("a second checkpoint of a committed step is refused and changes nothing, as is one under a colliding app's name", async () => {
    const [id] = await stack.send({ name: "cp/overwrite", data: { id: kind } });
    const run = await stack.waitForRun(id!);
    expect(run.output).toMatchObject({ status: 409, body: { refused: "step-stored" }, otherApp: 409 });
    expect((await storedSteps(run.id))[0]).toEqual({ id: "a", status: "completed", output: "first" });
    expect((await storedSteps(run.id)).map((s) => s.id)).toEqual(["a", "b"]);
  });

  it("a checkpoint of a finished run is refused", async () => {
    const [id] = await stack.send({ name: "cp/chain", data: { id: `${kind}-2` } });
    const run = await stack.waitForRun(id!);
    const last = checkpoints.filter((c) => c.run.id === run.id).at(-1)!;
    const response = await postCheckpoint({ ...last, step: { ...last.step, id: "z", name: "z", position: 9 } });
    expect(response.status).toBe(409);
    expect(((await stack.getRun(run.id)).steps).map((s) => s.id)).toEqual(["a", "b", "c"]);
  });

  it.each(["502", "refuse", "lose-answer", "200-page"] as const)("a checkpoint that fails on the way (%s) ends the invocation; the answer carries the result, which is stored once", async (fault) => {
    checkpointFault = fault;
    const key = `${kind}-${fault}`;
    const [id] = await stack.send({ name: "cp/chain", data: { id: key } });
    const run = await stack.waitForRun(id!);
    expect(run).toMatchObject({ status: "completed", output: { a: 1, b: "completed", c: 3 } });
    expect([bodies.get(`${key}:a`), bodies.get(`${key}:b`), bodies.get(`${key}:c`)]).toEqual([1, 1, 1]);
    // Each step's result went back in an answer: one invocation per step, and the last to return.
    expect(invocations.get("chain")).toBe(4);
    expect(stack.log.lines.filter((line) => line.includes(run.id) && line.startsWith("WARN"))).toEqual([]);
  });

  it("many invocations at once: the checkpoints that wait go in batches, each committed once, and each run goes on in its one invocation", async () => {
    // Each checkpoint takes 30 ms on the way, so the twelve runs' checkpoints meet while two are on the way.
    checkpointFault = "slow";
    const ids = await stack.send(Array.from({ length: 12 }, (_, n) => ({ name: "cp/chain" as const, data: { id: `${kind}-many-${n}` } })));
    const runs = await Promise.all(ids.map((id) => stack.waitForRun(id)));
    expect(runs.map((run) => run.status)).toEqual(Array(12).fill("completed"));
    expect(runs.map((run) => run.output)).toEqual(Array(12).fill({ a: 1, b: "completed", c: 3 }));
    expect(batches.length).toBeGreaterThan(0);
    expect(batches.every((size) => size >= 2)).toBe(true);
    // Every step ran once and was committed by its checkpoint: one invocation per run.
    expect(invocations.get("chain")).toBe(12);
    for (let n = 0; n < 12; n++) expect(["a", "b", "c"].map((step) => bodies.get(`${kind}-many-${n}:${step}`))).toEqual([1, 1, 1]);
    const committed = runs.flatMap((run) => stack.log.lines.filter((line) => line.includes(run.id) && line.endsWith("(checkpoint)")));
    expect(committed).toHaveLength(36);
  });

  it("an executor that refuses batches whole (one from before them): their checkpoints go again alone, each committed once, and each run goes on in its one invocation", async () => {
    checkpointFault = "no-batches";
    // No window after a refusal here, so no state outlasts the test: every batch is tried, refused, and sent again alone.
    setSinglesAfterRefusal(0);
    try {
      const ids = await stack.send(Array.from({ length: 12 }, (_, n) => ({ name: "cp/chain" as const, data: { id: `${kind}-old-${n}` } })));
      const runs = await Promise.all(ids.map((id) => stack.waitForRun(id)));
      expect(runs.map((run) => run.output)).toEqual(Array(12).fill({ a: 1, b: "completed", c: 3 }));
      expect(refusedBatches).toBeGreaterThan(0);
      // Nothing was lost to the refusals: one invocation per run, every step ran once, committed by a checkpoint.
      expect(invocations.get("chain")).toBe(12);
      for (let n = 0; n < 12; n++) expect(["a", "b", "c"].map((step) => bodies.get(`${kind}-old-${n}:${step}`))).toEqual([1, 1, 1]);
      const committed = runs.flatMap((run) => stack.log.lines.filter((line) => line.includes(run.id) && line.endsWith("(checkpoint)")));
      expect(committed).toHaveLength(36);
    } finally {
      setSinglesAfterRefusal(SINGLES_AFTER_REFUSAL_MS);
    }
  });

  it("a batch's checkpoints are each committed or refused on their own, as if each came alone", async () => {
    const [id] = await stack.send({ name: "cp/batch", data: { id: kind } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("completed");
    const { status, body } = run.output as { status: number; body: { ok: boolean; outcomes: Array<{ status: number; refused?: string; error?: string }> } };
    expect(status).toBe(200);
    expect(body.outcomes.map((o) => o.status)).toEqual([200, 409, 400, 400]);
    expect(body.outcomes[1]).toMatchObject({ refused: "step-stored" });
    expect(body.outcomes[2]!.error).toMatch(/for app "another-app" but signed for app "checkpoints"/);
    expect(body.outcomes[3]!.error).toMatch(/^Not a Stepwise checkpoint: /);
    // What the batch committed is stored, and nothing else of it: "a" keeps its first output.
    const stored = await storedSteps(run.id);
    expect(stored.find((s) => s.id === "a")).toEqual({ id: "a", status: "completed", output: "first" });
    expect(stored.find((s) => s.id === "x")).toEqual({ id: "x", status: "completed", output: "by hand" });
    expect(stored.map((s) => s.id).sort()).toEqual(["a", "b", "x"]);
  });

  it("refuses malformed batches whole (400, saying what is wrong), and unsigned ones (401); nothing is written", async () => {
    const [id] = await stack.send({ name: "cp/chain", data: { id: `${kind}-3` } });
    const run = await stack.waitForRun(id!);
    const last = checkpoints.filter((c) => c.run.id === run.id).at(-1)!;
    const one = { ...last, step: { ...last.step, id: "z", name: "z", position: 9 } };
    const refusal = async (batch: unknown) => {
      const response = await postCheckpoint(batch);
      return { status: response.status, error: ((await response.json()) as { error?: string }).error };
    };
    expect(await refusal({ version: PROTOCOL_VERSION, appId: "checkpoints", checkpoints: [] })).toMatchObject({ status: 400, error: expect.stringMatching(/^Not a Stepwise checkpoint batch: checkpoints: Too small/) });
    expect(await refusal({ version: PROTOCOL_VERSION, appId: "checkpoints", checkpoints: Array(MAX_CHECKPOINT_BATCH + 1).fill(one) })).toMatchObject({ status: 400, error: expect.stringMatching(/checkpoints/) });
    expect(await refusal({ version: PROTOCOL_VERSION, checkpoints: [one] })).toMatchObject({ status: 400, error: expect.stringMatching(/appId/) });
    const body = JSON.stringify({ version: PROTOCOL_VERSION, appId: "checkpoints", checkpoints: [one] });
    const unsigned = await fetch(`${stack.executor.url}${CHECKPOINT_ROUTE}`, { method: "POST", headers: { "content-type": "application/json", [HEADERS.signature]: await sign("some-other-key", { method: "POST", target: CHECKPOINT_ROUTE, body }) }, body });
    expect(unsigned.status).toBe(401);
    expect((await stack.getRun(run.id)).steps.map((s) => s.id)).toEqual(["a", "b", "c"]);
  });

  it("refuses unsigned, wrongly signed and malformed checkpoints", async () => {
    const body = JSON.stringify({ version: PROTOCOL_VERSION, run: { id: "r", appId: "checkpoints", functionId: "chain" }, token: "1.1.x", step: { id: "a", name: "a", position: 0, output: 1, durationMs: 0 } });
    const post = async (headers: Record<string, string>, text = body) =>
      (await fetch(`${stack.executor.url}${CHECKPOINT_ROUTE}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: text })).status;
    expect(await post({})).toBe(401);
    expect(await post({ [HEADERS.signature]: await sign("some-other-key", { method: "POST", target: CHECKPOINT_ROUTE, body }) })).toBe(401);
    const malformed = JSON.stringify({ run: { appId: "checkpoints" }, token: 5 });
    expect(await post({ [HEADERS.signature]: await sign(DEV_SIGNING_KEY, { method: "POST", target: CHECKPOINT_ROUTE, body: malformed }) }, malformed)).toBe(400);
    // Well formed, for a run that does not exist: refused, nothing written.
    expect(await post({ [HEADERS.signature]: await sign(DEV_SIGNING_KEY, { method: "POST", target: CHECKPOINT_ROUTE, body }) })).toBe(409);
  });
});
