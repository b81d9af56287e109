/**
 * A run without checkpoints answers each invocation with the one step it ran; the executor
 * commits that step under the invocation's own lease and invokes the app again under the same
 * job (packages/engine/src/runtime/answered-step.ts). One invocation per step still, each step's
 * code once, and the same fence as an app's checkpoint: an answer that comes after a cancel, a
 * pause or a takeover is not committed that way, and no step runs after it. Each race here would
 * run a step after a cancel or a pause, or run a stored step again, without that fence.
 */
import { PROTOCOL_VERSION, type InvokeRequestWire } from "@stepwise/protocol";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startTwoExecutors, type TwoExecutorStack } from "../support/stack.ts";

type Sql = { query(text: string, params?: unknown[]): Promise<Array<Record<string, unknown>>> };

const Id = z.object({ id: z.string() });
const client = new Stepwise({
  id: "answered",
  dev: true,
  checkpointing: false,
  schemas: { "ans/chain": Id, "ans/cancel": Id, "ans/pause": Id, "ans/stolen": Id, "ans/elsewhere": Id, "ans/stumbles": Id },
});

/** How often each step's code ran, by `<event id>:<step>`. */
const bodies = new Map<string, number>();
const count = (key: string) => bodies.set(key, (bodies.get(key) ?? 0) + 1).get(key)!;
/** The lease token of each invocation of each run, in order, as the app received them. */
const tokens = new Map<string, string[]>();

let stack: TwoExecutorStack;
const sql = () => (stack.store as unknown as { client: Sql }).client;
const api = (path: string) => fetch(`${stack.executor.url}${path}`, { method: "POST" });
const storedSteps = async (runId: string) => (await stack.getRun(runId)).steps.map((s) => ({ id: s.id, status: s.status, output: s.output }));
const settle = () => new Promise((resolve) => setTimeout(resolve, 400));

const chain = client.createFunction({ id: "chain", triggers: [{ event: "ans/chain" }] }, async ({ event, step }) => {
  let total = 0;
  for (const name of ["a", "b", "c", "d"]) total += await step.run(name, () => (count(`${event.data.id}:${name}`), 1));
  return total;
});

/** Cancelled while step "b" runs: its answer comes after the cancel. */
const cancelled = client.createFunction({ id: "cancelled", triggers: [{ event: "ans/cancel" }] }, async ({ event, step, runId }) => {
  await step.run("a", () => (count(`${event.data.id}:a`), "a"));
  await step.run("b", async () => {
    count(`${event.data.id}:b`);
    await api(`/api/runs/${runId}/cancel`);
    return "b";
  });
  await step.run("c", () => count(`${event.data.id}:c`));
  return "finished";
});

/** Paused while step "b" runs (the first time): nothing after it runs until the resume. */
const paused = client.createFunction({ id: "paused", triggers: [{ event: "ans/pause" }] }, async ({ event, step, runId }) => {
  await step.run("a", () => (count(`${event.data.id}:a`), "a"));
  await step.run("b", async () => {
    if (count(`${event.data.id}:b`) === 1) await api(`/api/runs/${runId}/pause`);
    return "b";
  });
  await step.run("c", () => count(`${event.data.id}:c`));
  return "finished";
});

/** Another worker takes the job over while step "b" runs (this one's lease ran out: a stall, a GC pause). */
const stolen = client.createFunction({ id: "stolen", triggers: [{ event: "ans/stolen" }] }, async ({ event, step, runId }) => {
  await step.run("a", () => (count(`${event.data.id}:a`), "a"));
  await step.run("b", async () => {
    if (count(`${event.data.id}:b`) === 1) {
      await sql().query("UPDATE jobs SET locked_by = 'another-executor', claims = claims + 1, locked_until = now() + interval '1 hour' WHERE run_id = $1", [runId]);
    }
    return "b";
  });
  await step.run("c", () => count(`${event.data.id}:c`));
  return "finished";
});

/**
 * While step "b" runs, the second executor commits step "c" under this invocation's lease, as it
 * would a checkpoint that reached it behind a load balancer: the first executor's view of the
 * run lacks it. The next invocation must still carry "c", so its code never runs.
 */
const elsewhere = client.createFunction({ id: "elsewhere", triggers: [{ event: "ans/elsewhere" }] }, async ({ event, step, runId }) => {
  await step.run("a", () => (count(`${event.data.id}:a`), "a"));
  await step.run("b", async () => {
    count(`${event.data.id}:b`);
    const checkpoint = {
      version: PROTOCOL_VERSION,
      run: { id: runId, appId: "answered", functionId: "elsewhere" },
      token: tokens.get(runId)!.at(-1)!,
      step: { id: "c", name: "c", position: 2, output: "from the other executor", durationMs: 1 },
    };
    await stack.second.checkpoint(checkpoint, "answered");
    return "b";
  });
  return step.run("c", () => (count(`${event.data.id}:c`), "from this invocation"));
});

/**
 * Eight steps; the first invocation after each of the first six steps cannot start in the app
 * (it answers 503 `notStarted`, as when it cannot read the run's outputs back): a failure of
 * the job in the executor, retried with backoff. Five failures of one job give its run up.
 */
const STUMBLES = 6;
const stumbles = client.createFunction({ id: "stumbles", triggers: [{ event: "ans/stumbles" }] }, async ({ event, step }) => {
  let total = 0;
  for (let n = 0; n < STUMBLES + 2; n++) total += await step.run(`s${n}`, () => (count(`${event.data.id}:s${n}`), 1));
  return total;
});
/** Runs whose invocation after this many stored steps was answered `notStarted` already. */
const stumbled = new Set<string>();

describe.each(STORE_KINDS)("answers committed under their invocation's lease, on %s", (kind) => {
  beforeAll(async () => {
    stack = await startTwoExecutors({
      store: kind,
      client,
      functions: [chain, cancelled, paused, stolen, elsewhere, stumbles],
      // Short leases: with the queue in Redis, the job the test gives back in the record is free there soon too.
      executor: { leaseMs: 2_000 },
      // The second executor runs no jobs: it only takes the checkpoint the test hands it.
      second: { concurrency: 0 },
      intercept: async (request, app) => {
        if (request.method === "POST") {
          const body = (await request.clone().json()) as InvokeRequestWire;
          if (body.checkpoint) tokens.set(body.run.id, [...(tokens.get(body.run.id) ?? []), body.checkpoint.token]);
          const at = `${body.run.id}:${body.steps.length}`;
          if (body.run.functionId === "stumbles" && body.steps.length >= 1 && body.steps.length <= STUMBLES && !stumbled.has(at)) {
            stumbled.add(at);
            return Response.json({ error: "could not read the run's stored outputs back", notStarted: true }, { status: 503 });
          }
        }
        return app(request);
      },
    });
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
  });
  beforeEach(() => tokens.clear());

  it("invokes once per step, each step's code once, all under the job the run started with", async () => {
    const key = `${kind}-chain`;
    const [id] = await stack.send({ name: "ans/chain", data: { id: key } });
    const run = await stack.waitForRun(id!);
    expect(run).toMatchObject({ status: "completed", output: 4 });
    expect(["a", "b", "c", "d"].map((name) => bodies.get(`${key}:${name}`))).toEqual([1, 1, 1, 1]);
    const sent = tokens.get(run.id)!;
    expect(sent).toHaveLength(5);
    // One job and one claim of it throughout: "<job>.<claim>.<worker>".
    expect(new Set(sent).size).toBe(1);
    expect(stack.log.lines.filter((line) => line.includes(run.id) && / step "[a-d]" completed in /.test(line))).toHaveLength(4);
  });

  it("a cancel during a step is final: its answer is not stored and no step after it runs", async () => {
    const key = `${kind}-cancel`;
    const [id] = await stack.send({ name: "ans/cancel", data: { id: key } });
    const run = await stack.waitForRun(id!);
    await settle();
    expect(run.status).toBe("cancelled");
    expect(bodies.get(`${key}:c`)).toBeUndefined();
    expect(await storedSteps(run.id)).toEqual([{ id: "a", status: "completed", output: "a" }]);
  });

  it("a pause during a step holds the run there: no step after it runs until the resume, then it finishes", async () => {
    const key = `${kind}-pause`;
    const [id] = await stack.send({ name: "ans/pause", data: { id: key } });
    const deadline = Date.now() + 10_000;
    let run = (await stack.runsOf(id!))[0]!;
    while (!run.paused && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      run = (await stack.runsOf(id!))[0]!;
    }
    await settle();
    expect(bodies.get(`${key}:c`)).toBeUndefined();
    expect((await storedSteps(run.id)).map((step) => step.id)).not.toContain("c");
    expect((await api(`/api/runs/${run.id}/resume`)).status).toBe(200);
    expect(await stack.waitForRun(id!)).toMatchObject({ status: "completed", output: "finished" });
    expect(bodies.get(`${key}:a`)).toBe(1);
    expect(bodies.get(`${key}:c`)).toBe(1);
  });

  it("an answer that comes after another worker took the job is not stored; the new holder finishes the run", async () => {
    const key = `${kind}-stolen`;
    const [id] = await stack.send({ name: "ans/stolen", data: { id: key } });
    const deadline = Date.now() + 10_000;
    while (!bodies.get(`${key}:b`) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    await settle();
    const [queued] = await stack.runsOf(id!);
    // This executor goes no further while another holds the job: "c" does not run, "b" is not stored.
    expect(bodies.get(`${key}:c`)).toBeUndefined();
    expect((await storedSteps(queued!.id)).map((step) => step.id)).toEqual(["a"]);
    // The other worker gives the job up (its lease runs out): this executor takes it and finishes.
    await sql().query("UPDATE jobs SET locked_until = now() - interval '1 second' WHERE run_id = $1", [queued!.id]);
    expect(await stack.waitForRun(id!, { timeoutMs: 20_000 })).toMatchObject({ status: "completed", output: "finished" });
    expect([bodies.get(`${key}:a`), bodies.get(`${key}:b`), bodies.get(`${key}:c`)]).toEqual([1, 2, 1]);
  });

  it("failures in the executor count per step, as each step's answer ends its job: six steps failing once each do not give the run up", async () => {
    const key = `${kind}-stumbles`;
    const [id] = await stack.send({ name: "ans/stumbles", data: { id: key } });
    const run = await stack.waitForRun(id!, { timeoutMs: 30_000 });
    expect(run).toMatchObject({ status: "completed", output: STUMBLES + 2 });
    expect([...stumbled].filter((at) => at.startsWith(`${run.id}:`))).toHaveLength(STUMBLES);
    for (let n = 0; n < STUMBLES + 2; n++) expect(bodies.get(`${key}:s${n}`)).toBe(1);
  }, 40_000);

  it("a step another executor committed meanwhile is sent to the app, not run again", async () => {
    const key = `${kind}-elsewhere`;
    const [id] = await stack.send({ name: "ans/elsewhere", data: { id: key } });
    const run = await stack.waitForRun(id!);
    expect(run).toMatchObject({ status: "completed", output: "from the other executor" });
    expect(bodies.get(`${key}:c`)).toBeUndefined();
    expect([bodies.get(`${key}:a`), bodies.get(`${key}:b`)]).toEqual([1, 1]);
  });
});
