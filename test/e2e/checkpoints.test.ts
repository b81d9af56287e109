/**
 * Checkpointing end to end, with its fence: consecutive `step.run`s go on in one invocation,
 * each result durable before the next step starts; and an invocation that lost its lease, whose
 * run was cancelled or finished, or whose step is already stored, is refused and stops at once.
 * Each race here would duplicate a committed step or run a step after a cancel without the fence.
 */
import { CHECKPOINT_ROUTE, DEV_SIGNING_KEY, HEADERS, PROTOCOL_VERSION, sign, type CheckpointRequest } from "@stepwise/protocol";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

type Sql = { query(text: string, params?: unknown[]): Promise<Array<Record<string, unknown>>> };

const bodies = new Map<string, number>();
const count = (key: string) => bodies.set(key, (bodies.get(key) ?? 0) + 1).get(key)!;
const Id = z.object({ id: z.string() });

/** What the test does to the app's checkpoint requests (the network between app and executor). */
let checkpointFault: "none" | "502" | "refuse" | "lose-answer" | "200-page" = "none";
const checkpoints: CheckpointRequest[] = [];

const client = new Stepwise({
  id: "checkpoints",
  dev: true,
  schemas: { "cp/chain": Id, "cp/cancel-a": Id, "cp/cancel-b": Id, "cp/stolen": Id, "cp/overwrite": Id, "cp/off": Id },
  fetch: async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    if (!url.endsWith(CHECKPOINT_ROUTE)) return fetch(input, init);
    checkpoints.push(JSON.parse(String(init?.body)) as CheckpointRequest);
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

describe.each(STORE_KINDS)("checkpointing on %s", (kind) => {
  const invocations = new Map<string, number>();
  beforeAll(async () => {
    stack = await startStack({
      store: kind,
      client,
      functions: [chain, off, cancelledInA, cancelledInB, stolen, overwrite],
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
