/**
 * Runs that store more than a host accepts in one request. The executor sends outputs up to a
 * budget and the rest by size alone; the app reads those back before it replays. A run whose
 * steps return 1 MB each finishes behind a Lambda-sized request cap (6 MB), and a read of the
 * left-out outputs that fails on the way (a 502 page, a refused connection, JSON cut off) is
 * tried again without running any step twice.
 */
import { APPS_ROUTE, DEV_SIGNING_KEY, HEADERS, PROTOCOL_VERSION, sign, STEP_OUTPUTS_ROUTE } from "@stepwise/protocol";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

/** AWS Lambda's cap on a synchronous invocation's payload. */
const LAMBDA_REQUEST_BYTES = 6 * 1024 * 1024;
const MB = 1024 * 1024;
/** A 1 MB output that says which step made it, so a mixed-up replay shows. */
const big = (i: number) => `${i}:`.padEnd(MB, String.fromCharCode(97 + i));

const Id = z.object({ id: z.string() });
const executions = new Map<string, number>();
const ran = (key: string) => executions.set(key, (executions.get(key) ?? 0) + 1);

describe.each(STORE_KINDS)("outputs left out of the invocation (%s)", (storeKind) => {
  /** The app as users run it (its calls to the executor over kept-alive node:http), and one whose network fails. */
  let stack: Stack;
  let faultyStack: Stack;
  let largestInvocation = 0;
  /** What the network does to the app's reads of left-out outputs; one fault per read until empty. */
  const readFaults: Array<"502" | "refuse" | "cut"> = [];
  const reads: string[][] = [];

  const client = new Stepwise({ id: "large-outputs", dev: true, schemas: { "big/chain": Id, "big/pair": Id, "big/long": Id } });
  const faultyClient = new Stepwise({
    id: "large-outputs-faulty",
    dev: true,
    schemas: { "big/faults": Id },
    fetch: async (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      if (!url.endsWith(STEP_OUTPUTS_ROUTE)) return fetch(input, init);
      reads.push((JSON.parse(String(init?.body)) as { steps: string[] }).steps);
      const fault = readFaults.shift();
      if (fault === "502") return new Response("<html><h1>502 Bad Gateway</h1></html>", { status: 502, headers: { "content-type": "text/html" } });
      if (fault === "refuse") throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) });
      const answer = await fetch(input, init);
      if (fault === "cut") return new Response((await answer.text()).slice(0, 100), { status: 200, headers: { "content-type": "application/json" } });
      return answer;
    },
  });

  const chain = client.createFunction({ id: "chain", triggers: [{ event: "big/chain" }] }, async ({ event, step }) => {
    // Small: it always fits in the request, beside the large ones left out.
    const small = await step.run("small", () => (ran(`${event.data.id}:small`), { n: 42 }));
    const outputs: string[] = [];
    for (let i = 0; i < 8; i++) {
      outputs.push(await step.run(`big-${i}`, () => (ran(`${event.data.id}:big-${i}`), big(i))));
      // Each sleep ends the invocation: the next one replays every output stored so far.
      await step.sleep(`pause-${i}`, "10ms");
    }
    return [small.n, ...outputs.map((output, i) => output === big(i))];
  });

  /** As many steps as a run may reach (1,000), 4 KB each, then a sleep: the invocation after it replays them all. */
  const long = client.createFunction({ id: "long", triggers: [{ event: "big/long" }] }, async ({ event, step }) => {
    let total = 0;
    for (let i = 0; i < 998; i++) {
      total += (await step.run(`s${i}`, () => (ran(`${event.data.id}:s${i}`), `${i}:`.padEnd(4096, "x")))).length;
    }
    await step.sleep("pause", "10ms");
    return step.run("last", () => total);
  });

  const pair = client.createFunction({ id: "pair", triggers: [{ event: "big/pair" }] }, async ({ event, step }) => {
    const a = await step.run("a", () => (ran(`${event.data.id}:a`), "p".repeat(1.5 * MB)));
    await step.sleep("pause", "10ms");
    return step.run("b", () => a.length);
  });

  // No retries: a failed read must not spend an attempt of the function (none of it ran).
  const faulted = faultyClient.createFunction({ id: "faults", triggers: [{ event: "big/faults" }], retries: 0 }, async ({ event, step }) => {
    // Over the executor's default budget of 1 MB: left out of the second invocation, read back.
    const a = await step.run("a", () => (ran(`${event.data.id}:a`), { text: "x".repeat(1.5 * MB) }));
    await step.sleep("pause", "10ms");
    const b = await step.run("b", () => (ran(`${event.data.id}:b`), a.text.length));
    return { a: a.text.length, b };
  });

  // One stack at a time: the SDK finds its executor through STEPWISE_BASE_URL, which each stack sets.
  describe("as users run it", () => {
    beforeAll(async () => {
      stack = await startStack({
        store: storeKind,
        client,
        functions: [chain, pair, long],
        // What AWS Lambda does with a larger request: refuses it.
        intercept: async (request, app) => {
          if (request.method !== "POST") return app(request);
          const bytes = (await request.clone().arrayBuffer()).byteLength;
          largestInvocation = Math.max(largestInvocation, bytes);
          if (bytes > LAMBDA_REQUEST_BYTES) return new Response(JSON.stringify({ message: "Request must be smaller than 6291456 bytes" }), { status: 413 });
          return app(request);
        },
      });
    });
    afterAll(async () => stack?.close());

    it("finishes a run whose steps return 1 MB each behind a 6 MB request cap, each step run once", async () => {
      largestInvocation = 0;
      const [eventId] = await stack.send({ name: "big/chain", data: { id: `chain-${storeKind}` } });
      const run = await stack.waitForRun(eventId!, { timeoutMs: 60_000 });
      expect(run.status).toBe("completed");
      // Every replayed output was the one its step returned.
      expect(run.output).toEqual([42, ...Array.from({ length: 8 }, () => true)]);
      for (let i = 0; i < 8; i++) expect(executions.get(`chain-${storeKind}:big-${i}`)).toBe(1);
      // 8 MB stored; each invocation carried at most the executor's 1 MB budget of it.
      expect(largestInvocation).toBeLessThan(1.2 * MB);
    });

    // On PostgreSQL alone: what the invocation carries is the executor's doing, the same on every
    // store, and 1,000 checkpointed steps cost 20-30 s of CI per store with the suites beside it.
    if (storeKind === "postgres") it("finishes a run of 1,000 steps whose replay after a sleep stays within the request cap, each step run once", async () => {
      largestInvocation = 0;
      const key = `long-${storeKind}`;
      const [eventId] = await stack.send({ name: "big/long", data: { id: key } });
      const run = await stack.waitForRun(eventId!, { timeoutMs: 60_000 });
      expect(run).toMatchObject({ status: "completed", output: 998 * 4096 });
      expect(run.steps).toHaveLength(1_000);
      expect(Array.from({ length: 998 }, (_, i) => executions.get(`${key}:s${i}`)).every((n) => n === 1)).toBe(true);
      // 4 MB stored: the invocation after the sleep carried the 1 MB budget of it and the rest by size.
      expect(largestInvocation).toBeLessThan(1.5 * MB);
    }, 90_000);

    // Last: it registers the app as an older SDK would, then as it is.
    it("sends it every output, as before, instead of one by size it would take for null", async () => {
      // Registered as an SDK from before the feature registers: its description without `features`.
      const { features, ...older } = (await (await fetch(stack.appUrl)).json()) as { features?: string[] };
      expect(features).toEqual(["outputs-by-size", "compact-steps"]);
      const body = JSON.stringify(older);
      const headers = { "content-type": "application/json", [HEADERS.signature]: await sign(DEV_SIGNING_KEY, { method: "POST", target: APPS_ROUTE, body }) };
      expect((await fetch(`${stack.executor.url}${APPS_ROUTE}`, { method: "POST", headers, body })).status).toBe(200);
      try {
        largestInvocation = 0;
        const [eventId] = await stack.send({ name: "big/pair", data: { id: `pair-${storeKind}` } });
        const run = await stack.waitForRun(eventId!, { timeoutMs: 30_000 });
        expect([run.status, run.output]).toEqual(["completed", 1.5 * MB]);
        expect(largestInvocation).toBeGreaterThan(1.5 * MB);
      } finally {
        // Registered again as it is.
        expect((await fetch(stack.appUrl, { method: "PUT" })).status).toBe(200);
      }
    });
  });

  describe("with faults on the way to the executor", () => {
    beforeAll(async () => {
      faultyStack = await startStack({ store: storeKind, client: faultyClient, functions: [faulted] });
    });
    afterAll(async () => faultyStack?.close());

    it("tries the invocation again when reading left-out outputs fails on the way, spending no attempt and running no step twice", async () => {
      readFaults.push("502", "refuse", "cut");
      reads.length = 0;
      const id = `faults-${storeKind}`;
      const [eventId] = await faultyStack.send({ name: "big/faults", data: { id } });
      const run = await faultyStack.waitForRun(eventId!, { timeoutMs: 30_000 });
      expect(run.status).toBe("completed");
      expect(run.output).toEqual({ a: 1.5 * MB, b: 1.5 * MB });
      expect(executions.get(`${id}:a`)).toBe(1);
      expect(executions.get(`${id}:b`)).toBe(1);
      // Three faulted reads, then the one that worked (and any after it).
      expect(readFaults).toEqual([]);
      expect(reads.length).toBeGreaterThanOrEqual(4);
      expect(reads[0]).toEqual(["a"]);
      expect(faultyStack.log.lines.some((line) => /run \S+: could not read the stored output of step "a" from \S+: fetch failed \(connect ECONNREFUSED\)/.test(line))).toBe(true);
    // Each failed read is the job's failure, retried with a backoff, not the function's attempt.
    expect(faultyStack.log.lines.filter((line) => /did not start in the app, not an attempt of the function \(failure \d\): InvocationNotStarted/.test(line))).toHaveLength(3);
    // A refused connection in the app's words is not the executor's store being down.
    expect(faultyStack.log.lines.filter((line) => /store unavailable/.test(line))).toEqual([]);
    });

    it("answers only the app whose run it is, signed, with a request it can read", async () => {
      const post = async (body: unknown, key: string | null = DEV_SIGNING_KEY) => {
        const text = JSON.stringify(body);
        const headers: Record<string, string> = { "content-type": "application/json" };
        if (key) headers[HEADERS.signature] = await sign(key, { method: "POST", target: STEP_OUTPUTS_ROUTE, body: text });
        const response = await fetch(`${faultyStack.executor.url}${STEP_OUTPUTS_ROUTE}`, { method: "POST", headers, body: text });
        return { status: response.status, body: (await response.json()) as { error?: string; steps?: unknown[] } };
      };
      const [eventId] = await faultyStack.send({ name: "big/faults", data: { id: `api-${storeKind}` } });
      const run = await faultyStack.waitForRun(eventId!);
      const asked = { version: PROTOCOL_VERSION, run: { id: run.id, appId: "large-outputs-faulty", functionId: "faults" }, steps: ["a", "b", "nope"] };
      const read = await post(asked);
      expect(read.status).toBe(200);
      expect(read.body.steps).toEqual([{ id: "a", output: { text: "x".repeat(1.5 * MB) } }, { id: "b", output: 1.5 * MB }]);
      expect((await post(asked, null)).status).toBe(401);
      expect((await post(asked, "not-the-key")).status).toBe(401);
      const otherApp = await post({ ...asked, run: { ...asked.run, appId: "someone-else" } });
      expect(otherApp.status).toBe(404);
      const otherFunction = await post({ ...asked, run: { ...asked.run, functionId: "chain" } });
      expect([otherFunction.status, otherFunction.body.error]).toEqual([404, `No run ${run.id} of function "chain" in app "large-outputs-faulty"`]);
      const malformed = await post({ ...asked, steps: [] });
      expect(malformed.status).toBe(400);
      expect(malformed.body.error).toMatch(/^Not a Stepwise step-outputs request: steps:/);
    });
  });
});
