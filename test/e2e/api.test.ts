/**
 * The executor's API at its edges: idempotent event IDs, bad input answered with a 4xx that
 * says what is wrong and stores nothing, the size and count limits, run queries.
 */
import { DEV_SIGNING_KEY, sign } from "@stepwise/protocol";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const client = new Stepwise({
  id: "api",
  dev: true,
  schemas: {
    "test/hello": z.object({ name: z.string() }),
    "test/big-output": z.object({ bytes: z.number() }),
    "test/many-steps": z.object({ steps: z.number() }),
    "test/heavy": z.object({}),
  },
});

const hello = client.createFunction({ id: "hello", triggers: [{ event: "test/hello" }] }, async ({ event, step }) =>
  step.run("greet", () => `hello ${event.data.name}`),
);
const bigOutput = client.createFunction({ id: "big-output", triggers: [{ event: "test/big-output" }], retries: 0 }, async ({ event, step }) =>
  step.run("produce", () => "x".repeat(event.data.bytes)),
);
const manySteps = client.createFunction({ id: "many-steps", triggers: [{ event: "test/many-steps" }], retries: 0 }, async ({ event, step }) => {
  for (let i = 0; i < event.data.steps; i++) await step.run(`s${i}`, () => i);
  return "done";
});

// Four results of 9 KB: each under the step limit, together over the run's state limit (30 KB).
const heavy = client.createFunction({ id: "heavy", triggers: [{ event: "test/heavy" }], retries: 0 }, async ({ step }) => {
  for (let i = 0; i < 4; i++) await step.run(`chunk-${i}`, () => "x".repeat(9_000));
  return "done";
});

describe.each(STORE_KINDS)("executor API on %s", (store) => {
  let stack: Stack;
  const post = (body: string, path = "/api/events") =>
    fetch(`${stack.executor.url}${path}`, { method: "POST", body, headers: { "content-type": "application/json" } });

  beforeAll(async () => {
    stack = await startStack({
      store,
      client,
      functions: [hello, bigOutput, manySteps, heavy],
      executor: { limits: { maxStepOutputBytes: 10_000, maxStepsPerRun: 5, maxRunStateBytes: 30_000 } },
    });
  });
  afterAll(async () => stack?.close());

  it("answers { ids } and starts a run; an event ID seen before creates no new run", async () => {
    const id = `dup-${store}-${Date.now()}`;
    const first = await stack.send({ id, name: "test/hello", data: { name: "Ada" } });
    const second = await stack.send({ id, name: "test/hello", data: { name: "Bob" } });
    expect(first).toEqual([id]);
    expect(second).toEqual([id]);
    const run = await stack.waitForRun(id);
    expect(run.output).toBe("hello Ada");
    expect(await stack.runsOf(id)).toHaveLength(1);
  });

  it("accepts a batch and answers one ID per event, in order", async () => {
    const ids = await stack.send([
      { name: "test/hello", data: { name: "A" } },
      { name: "test/hello", data: { name: "B" } },
    ]);
    expect(ids).toHaveLength(2);
    const outputs = await Promise.all(ids.map(async (id) => (await stack.waitForRun(id)).output));
    expect(outputs).toEqual(["hello A", "hello B"]);
  });

  it.each([
    ["malformed JSON", "{ name: ", 400, /not valid JSON/],
    ["a missing name", JSON.stringify({ data: {} }), 400, /name/],
    ["a name that is not a string", JSON.stringify({ name: 42 }), 400, /name must be a string/],
    ["data that is not an object", JSON.stringify({ name: "test/hello", data: "text" }), 400, /data must be a JSON object/],
    ["an empty batch", "[]", 400, /at least one event/],
    ["a reserved event name", JSON.stringify({ name: "stepwise/function.failed" }), 400, /reserved/],
    // Claimed in advance, an ID the executor derives later would make it skip its own event.
    ["an id in the executor's derived namespace", JSON.stringify({ name: "test/hello", id: "stepwise:01JRUN:step:0" }), 400, /reserved for the IDs the executor derives/],
    ["an id longer than 256 characters", JSON.stringify({ name: "test/hello", id: "x".repeat(257) }), 400, /at most 256/],
    ["an oversized payload", JSON.stringify({ name: "test/hello", data: { blob: "x".repeat(600 * 1024) } }), 413, /limit is 512 KB/],
    ["a number too large for JSON (stored as null before)", '{"name":"test/hello","data":{"name":"x","n":1e309}}', 400, /number too large for JSON at "n"/],
    ["more events than one request may carry", JSON.stringify(Array.from({ length: 1_001 }, () => ({ name: "test/none" }))), 413, /1001 in one request; the limit is 1000/],
  ])("rejects %s with a clear message", async (_, body, status, message) => {
    const response = await post(body);
    expect(response.status).toBe(status);
    expect(((await response.json()) as { error: string }).error).toMatch(message);
  });

  it("refuses a body that is not UTF-8 instead of storing U+FFFD in its place", async () => {
    const id = `utf8-${store}-${Date.now()}`;
    const bytes = new Uint8Array([...new TextEncoder().encode(`{"id":"${id}","name":"test/hello","data":{"name":"`), 0xff, 0xfe, ...new TextEncoder().encode('"}}')]);
    const response = await fetch(`${stack.executor.url}/api/events`, { method: "POST", body: bytes, headers: { "content-type": "application/json" } });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(/not valid UTF-8/);
    expect(await stack.runsOf(id)).toEqual([]);
  });

  it("stores nothing from a batch with one bad event", async () => {
    const id = `batch-${store}-${Date.now()}`;
    const response = await post(JSON.stringify([{ id, name: "test/hello", data: { name: "ok" } }, { name: "" }]));
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(/at 1\.name/);
    expect(await stack.runsOf(id)).toEqual([]);
    // The ID was not stored, so sending it now is new and starts a run.
    await stack.send({ id, name: "test/hello", data: { name: "later" } });
    expect((await stack.waitForRun(id)).output).toBe("hello later");
  });

  it("rejects two events with one ID in a request, and stores neither", async () => {
    const id = `twice-${store}-${Date.now()}`;
    const response = await post(JSON.stringify([{ id, name: "test/hello", data: { name: "a" } }, { id, name: "test/other", data: {} }]));
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(/event 1 \(test\/other\): its id ".*" is also the id of event 0/);
    expect(await stack.runsOf(id)).toEqual([]);
  });

  it("bounds what a run holds (and every invocation sends): a result that would pass the run's state limit fails its step", async () => {
    const [id] = await stack.send({ name: "test/heavy", data: {} });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("failed");
    expect(run.steps.map((s) => s.status)).toEqual(["completed", "completed", "completed", "failed"]);
    expect(run.steps[3]?.error).toMatchObject({ name: "RunStateTooLarge", message: expect.stringMatching(/would pass 29\.3 KB/) });
  });

  it("fails a step whose output is over the limit, with a message naming the sizes", async () => {
    const [id] = await stack.send({ name: "test/big-output", data: { bytes: 20_000 } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("failed");
    expect(run.steps[0]).toMatchObject({ status: "failed", error: { name: "StepOutputTooLarge" } });
    expect(run.steps[0]?.error?.message).toMatch(/returned 19\.5 KB; the limit is 9\.8 KB/);
  });

  it("fails a run that reaches more steps than allowed", async () => {
    const [ok] = await stack.send({ name: "test/many-steps", data: { steps: 5 } });
    expect((await stack.waitForRun(ok!)).status).toBe("completed");
    const [id] = await stack.send({ name: "test/many-steps", data: { steps: 6 } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("failed");
    expect(run.error?.name).toBe("StepLimitExceeded");
    expect(run.error?.message).toContain("limit is 5 steps per run");
  });

  it("lists functions and answers 404 for an unknown run", async () => {
    const functions = (await (await fetch(`${stack.executor.url}/api/functions`)).json()) as { functions: Array<{ id: string }> };
    expect(functions.functions.map((fn) => fn.id).sort()).toEqual(["api-big-output", "api-heavy", "api-hello", "api-many-steps"]);
    const missing = await fetch(`${stack.executor.url}/api/runs/no-such-run`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toContain("no-such-run");
  });

  it("refuses a registration whose function IDs another app holds, and keeps that app's functions", async () => {
    // App "api-big" with function "output" and app "api" with "big-output" are both api-big-output.
    const body = JSON.stringify({ appId: "api-big", url: "http://127.0.0.1:9/api/durable", sdk: "x", functions: [{ id: "output", triggers: [{ event: "test/hello" }], retries: 0 }] });
    const response = await fetch(`${stack.executor.url}/api/apps`, {
      method: "POST",
      body,
      headers: { "x-stepwise-signature": await sign(DEV_SIGNING_KEY, { method: "POST", target: "/api/apps", body }) },
    });
    expect(response.status).toBe(409);
    expect(((await response.json()) as { error: string }).error).toMatch(/"api-big-output" \(app "api"\), which another app already holds/);
    const { functions } = (await (await fetch(`${stack.executor.url}/api/functions`)).json()) as { functions: Array<{ id: string; appId: string }> };
    expect(functions.find((fn) => fn.id === "api-big-output")?.appId).toBe("api");
    const [id] = await stack.send({ name: "test/big-output", data: { bytes: 3 } });
    expect((await stack.waitForRun(id!)).output).toBe("xxx");
  });

  const register = async (appId: string, functions: string[]) => {
    const body = JSON.stringify({ appId, url: "http://127.0.0.1:9/api/durable", sdk: "x", functions: functions.map((id) => ({ id, triggers: [], retries: 0 })) });
    return fetch(`${stack.executor.url}/api/apps`, {
      method: "POST",
      body,
      headers: { "x-stepwise-signature": await sign(DEV_SIGNING_KEY, { method: "POST", target: "/api/apps", body }) },
    });
  };

  it("keeps a removed function's ID for its app: another app cannot take it over while its runs may wake", async () => {
    expect((await register(`sq-${store}`, ["x-y"])).status).toBe(200);
    expect((await register(`sq-${store}`, [])).status).toBe(200); // the app stops serving x-y
    const squat = await register(`sq-${store}-x`, ["y"]); // the same global ID, sq-<store>-x-y
    expect(squat.status).toBe(409);
    expect((await register(`sq-${store}`, ["x-y"])).status).toBe(200); // its own app may serve it again
  });

  it("refuses a function that would cancel on one of the executor's own events", async () => {
    const body = JSON.stringify({ appId: `spy-${store}`, url: "http://127.0.0.1:9/api/durable", sdk: "x", functions: [{ id: "f", triggers: [], retries: 0, cancelOn: [{ event: "stepwise/function.failed" }] }] });
    const response = await fetch(`${stack.executor.url}/api/apps`, {
      method: "POST",
      body,
      headers: { "x-stepwise-signature": await sign(DEV_SIGNING_KEY, { method: "POST", target: "/api/apps", body }) },
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(/cancelOn cannot name an executor event/);
  });

  it("lets one of two registrations racing for a new function ID win, never both", async () => {
    const [a, b] = await Promise.all([register(`race-${store}`, ["p-q"]), register(`race-${store}-p`, ["q"])]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    const { functions } = (await (await fetch(`${stack.executor.url}/api/functions`)).json()) as { functions: Array<{ id: string; appId: string }> };
    expect(functions.filter((fn) => fn.id === `race-${store}-p-q`)).toHaveLength(1);
  });

  it.each([
    ["a NUL in a run ID", "GET", "/api/runs/%00", /runId in the path: it contains a NUL character/],
    ["a NUL in a cancelled run's ID", "POST", "/api/runs/a%00b/cancel", /runId in the path: it contains a NUL character/],
    ["a NUL in an event ID", "GET", "/api/events/%00/runs", /eventId in the path: it contains a NUL character/],
    ["a 300-character run ID", "GET", `/api/runs/${"x".repeat(300)}`, /longer than 256 characters/],
  ])("answers %s in the path with 400 and a reason, not 500", async (_, method, path, message) => {
    const response = await fetch(`${stack.executor.url}${path}`, { method });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(message);
    expect(stack.log.lines.filter((line) => line.startsWith("ERROR"))).toEqual([]);
  });
});
