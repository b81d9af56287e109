/**
 * The stored steps an invocation carries, in the compact form for an SDK that declared it reads
 * it (`compact-steps`) and in full for one that did not. A run without checkpoints carries its
 * whole history in every invocation, so every field a step need not send is left out: the name
 * when it is the ID, the position when it is the step's index, the kind when it is `run`, the
 * status when it is `completed`. An older SDK validates every field and must still get them all.
 */
import { APPS_ROUTE, DEV_SIGNING_KEY, HEADERS, sign, StoredStepSchema } from "@stepwise/protocol";
import { NonRetriableError, Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, type Stack } from "../support/stack.ts";

const Id = z.object({ id: z.string() });
/** The steps of every invocation the app received, as sent. */
const sentSteps: Array<Array<Record<string, unknown>>> = [];
/** Every invocation that reached the app's URL, and whether the older instance refused it. */
const arrivals: Array<{ runId: string; stepCount: number; full: boolean; refused: boolean }> = [];
/** What an SDK from before the compact form checks an invocation's steps against. */
const FullSteps = z.array(StoredStepSchema.strict());
/** Set: the app answers as an instance older than its registration would (an older SDK's 400 to the compact form). */
let olderInstance = false;
/** Invocations that instance refused. */
let refused = 0;
const executions = new Map<string, number>();
const ran = <T>(key: string, value: T): T => (executions.set(key, (executions.get(key) ?? 0) + 1), value);

const client = new Stepwise({ id: "compact-steps", dev: true, schemas: { "compact/flow": Id } });

// One invocation per step, so each carries the history so far; every kind of stored step in it.
const flow = client.createFunction({ id: "flow", triggers: [{ event: "compact/flow" }], checkpointing: false, retries: 0 }, async ({ event, step }) => {
  const first = await step.run("a", () => ran(`${event.data.id}:a`, 1));
  // The same name again: its ID is not its name, so the name is sent.
  const again = await step.run("a", () => ran(`${event.data.id}:a:1`, 2));
  await step.sleep("nap", "10ms");
  let caught = "";
  try {
    await step.run("refused", () => {
      throw new NonRetriableError("no");
    });
  } catch (error) {
    caught = (error as Error).message;
  }
  // Parallel branches: each runs in a targeted invocation, which leaves its own step out, so
  // the one after it is sent off its index, with its position.
  const [x, y] = await Promise.all([step.run("x", () => 10), step.run("y", () => 20)]);
  return { first, again, caught, x, y };
});

const EXPECTED = { first: 1, again: 2, caught: "no", x: 10, y: 20 };

describe("stored steps on the wire", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      store: "pglite",
      client,
      functions: [flow],
      intercept: async (request, app) => {
        if (request.method !== "POST") return app(request);
        const { run, steps } = JSON.parse(await request.clone().text()) as { run: { id: string }; steps: Array<Record<string, unknown>> };
        const full = FullSteps.safeParse(steps).success;
        arrivals.push({ runId: run.id, stepCount: steps.length, full, refused: olderInstance && !full });
        if (olderInstance && !full) {
          refused++;
          return Response.json({ error: "Body is not a Stepwise invocation: steps.0.name: Invalid input: expected string, received undefined" }, { status: 400 });
        }
        sentSteps.push(steps);
        return app(request);
      },
    });
  });
  afterAll(async () => stack?.close());

  it("sends an SDK that reads the compact form each step without the fields that hold their usual value", async () => {
    sentSteps.length = 0;
    const [eventId] = await stack.send({ name: "compact/flow", data: { id: "compact" } });
    const run = await stack.waitForRun(eventId!, { timeoutMs: 30_000 });
    expect([run.status, run.output]).toEqual(["completed", EXPECTED]);
    const sent = sentSteps.flatMap((steps) => steps.map((step, index) => ({ step, index })));
    expect(sent.length).toBeGreaterThan(10);
    for (const { step, index } of sent) {
      if ("name" in step) expect(step.name).not.toBe(step.id);
      if ("kind" in step) expect(step.kind).not.toBe("run");
      if ("status" in step) expect(step.status).not.toBe("completed");
      if ("position" in step) expect(step.position).not.toBe(index);
    }
    const seen = (id: string) => sent.filter(({ step }) => step.id === id).map(({ step }) => step);
    expect(seen("a")[0]).toEqual({ id: "a", output: 1 });
    expect(seen("a:1")[0]).toEqual({ id: "a:1", name: "a", output: 2 });
    expect(seen("nap").some((step) => step.kind === "sleep" && step.output === null && !("status" in step))).toBe(true);
    expect(seen("refused")[0]).toMatchObject({ id: "refused", status: "failed", error: { name: "NonRetriableError", message: "no" } });
    // Sent in the invocation that runs "x" alone, in its place: "y", pending, with where it is.
    expect(sent.some(({ step, index }) => step.id === "y" && step.status === "pending" && step.position === index + 1)).toBe(true);
  });

  // After the first: the executor then sends this URL every field for five minutes.
  it("asks an instance older than the app's registration again with every field, then sends it every field, and says so once", async () => {
    sentSteps.length = 0;
    arrivals.length = 0;
    const warningsBefore = stack.log.lines.filter((line) => line.startsWith("WARN")).length;
    olderInstance = true;
    try {
      const [eventId] = await stack.send({ name: "compact/flow", data: { id: "older-instance" } });
      const run = await stack.waitForRun(eventId!, { timeoutMs: 30_000 });
      expect([run.status, run.output]).toEqual(["completed", EXPECTED]);
    } finally {
      olderInstance = false;
    }
    // The first invocation that carried a step was refused, then sent at once in full; every
    // one after it went in full the first time. One without steps is the same either way.
    expect(refused).toBe(1);
    const withSteps = arrivals.filter((arrival) => arrival.stepCount > 0);
    expect(withSteps.length).toBeGreaterThan(5);
    expect(withSteps[0]!.refused).toBe(true);
    expect(withSteps[1]).toMatchObject({ runId: withSteps[0]!.runId, stepCount: withSteps[0]!.stepCount, full: true, refused: false });
    expect(withSteps.slice(1).every((arrival) => arrival.full && !arrival.refused)).toBe(true);
    expect(arrivals.filter((arrival) => arrival.stepCount === 0)).toHaveLength(1);
    expect([executions.get("older-instance:a"), executions.get("older-instance:a:1")]).toEqual([1, 1]);
    // The operator hears of it once, with what the instance said.
    const warnings = stack.log.lines.filter((line) => line.startsWith("WARN")).slice(warningsBefore);
    expect(warnings.filter((line) => line.includes("compact form"))).toEqual([
      expect.stringContaining("app compact-steps: " + stack.appUrl + " refused stored steps in the compact form (HTTP 400: Body is not a Stepwise invocation: steps.0.name"),
    ]);
  });

  // Last: it registers the app as an older SDK would, then as it is.
  it("sends an SDK that did not declare it every field, as an older SDK's check requires", async () => {
    const description = (await (await fetch(stack.appUrl)).json()) as { features?: string[] };
    expect(description.features).toContain("compact-steps");
    const older = { ...description, features: description.features!.filter((feature) => feature !== "compact-steps") };
    const body = JSON.stringify(older);
    const headers = { "content-type": "application/json", [HEADERS.signature]: await sign(DEV_SIGNING_KEY, { method: "POST", target: APPS_ROUTE, body }) };
    expect((await fetch(`${stack.executor.url}${APPS_ROUTE}`, { method: "POST", headers, body })).status).toBe(200);
    try {
      sentSteps.length = 0;
      const [eventId] = await stack.send({ name: "compact/flow", data: { id: "full" } });
      const run = await stack.waitForRun(eventId!, { timeoutMs: 30_000 });
      expect([run.status, run.output]).toEqual(["completed", EXPECTED]);
      expect(sentSteps.length).toBeGreaterThan(5);
      for (const steps of sentSteps) expect(FullSteps.safeParse(steps).error).toBeUndefined();
    } finally {
      expect((await fetch(stack.appUrl, { method: "PUT" })).status).toBe(200);
    }
  });

  // Last: it leaves a second app registered at the app's URL.
  it("fails a run at once with the app's own reason when it refuses a first invocation, which has no steps to send in full", async () => {
    // Registered under another app's ID at this URL: the SDK here answers its invocations 400.
    const description = (await (await fetch(stack.appUrl)).json()) as Record<string, unknown>;
    const body = JSON.stringify({ ...description, appId: "compact-steps-elsewhere" });
    const headers = { "content-type": "application/json", [HEADERS.signature]: await sign(DEV_SIGNING_KEY, { method: "POST", target: APPS_ROUTE, body }) };
    expect((await fetch(`${stack.executor.url}${APPS_ROUTE}`, { method: "POST", headers, body })).status).toBe(200);
    arrivals.length = 0;
    const [eventId] = await stack.send({ name: "compact/flow", data: { id: "elsewhere" } });
    const run = await stack.waitForRun(eventId!, { functionId: "compact-steps-elsewhere-flow", status: "failed", timeoutMs: 30_000 });
    expect(run.error?.message).toContain('The invocation is for app "compact-steps-elsewhere" but reached app "compact-steps"');
    expect(arrivals.filter((arrival) => arrival.runId === run.id)).toHaveLength(1);
  });
});
