/**
 * `step.fetch`: the executor makes the request, so no invocation of the app is open while the
 * other side takes its time; the function gets a `Response` rebuilt from the stored answer. A
 * 429 or 5xx is retried (at the moment a `Retry-After` names), any other status is a response,
 * and the request (with its keys) is stored sealed, and only until it is made.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import { Executor, silentLogger } from "@stepwise/engine";
import { DEV_SIGNING_KEY } from "@stepwise/protocol";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const SECRET = "sk-test-do-not-store-7f3a";
/** Two cookies in one answer; the second's expiry holds a comma, so the two cannot be one value. */
const COOKIES = ["session=abc; Path=/; HttpOnly", "theme=dark; Expires=Wed, 21 Oct 2026 07:28:00 GMT"];

/** The other side: a model API that takes 2 s, one that limits its rate, one that fails twice, and so on. */
class Target {
  /** Each request: when it came, when it was answered, or when its caller dropped it unanswered. */
  readonly calls: Array<{ path: string; at: number; end?: number; dropped?: number; authorization?: string; body: string }> = [];
  private server!: Server;
  url = "";
  private seen = new Map<string, number>();

  async start(): Promise<void> {
    this.server = createServer(async (req, res) => {
      const call = { path: req.url ?? "", at: Date.now(), authorization: req.headers.authorization, body: await text(req) } as Target["calls"][number];
      this.calls.push(call);
      const [path, key] = (req.url ?? "").split("?key=") as [string, string | undefined];
      const n = (this.seen.get(`${path}${key}`) ?? 0) + 1;
      this.seen.set(`${path}${key}`, n);
      const answer = (status: number, body: string, headers: Record<string, string> = { "content-type": "application/json" }) => {
        call.end = Date.now();
        res.writeHead(status, headers).end(body);
      };
      if (path === "/hang") {
        // A model call that takes 20 s, unless its caller gives up first.
        const timer = setTimeout(() => answer(200, JSON.stringify({ answer: "late" })), 20_000);
        res.on("close", () => (clearTimeout(timer), call.end === undefined && (call.dropped = Date.now())));
        return;
      }
      if (path === "/huge") return answer(200, "x".repeat(5 * 1024 * 1024), { "content-type": "text/plain" });
      if (path === "/endless") {
        // No length, no end: 64 KB every few milliseconds until the caller hangs up.
        res.writeHead(200, { "content-type": "text/plain" });
        const chunk = "y".repeat(64 * 1024);
        const timer = setInterval(() => res.write(chunk), 2);
        res.on("close", () => (clearInterval(timer), (call.dropped = Date.now())));
        return;
      }
      if (path === "/slow") return setTimeout(() => answer(200, JSON.stringify({ answer: 42, got: JSON.parse(call.body || "null") })), 2_000);
      if (path === "/limited") return n === 1 ? answer(429, "slow down", { "retry-after": "1" }) : answer(200, JSON.stringify({ n }));
      if (path === "/flaky") return n <= 2 ? answer(503, "<html>down</html>", { "content-type": "text/html" }) : answer(200, JSON.stringify({ n }));
      if (path === "/binary") return answer(200, "", { "content-type": "application/octet-stream" }), undefined;
      if (path === "/missing") return answer(404, JSON.stringify({ error: "no such thing" }));
      if (path === "/elsewhere") return answer(307, "", { location: "http://169.254.169.254/latest/meta-data/" });
      if (path === "/cookies") {
        call.end = Date.now();
        res.setHeader("set-cookie", COOKIES);
        return res.writeHead(200, { "content-type": "application/json" }).end("{}");
      }
      answer(500, "unknown route");
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

const text = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => resolve(body));
  });

const client = new Stepwise({ id: "fetching", dev: true, schemas: { "fetch/go": z.object({ url: z.string(), retries: z.number().optional() }) } });

const call = client.createFunction({ id: "call", triggers: [{ event: "fetch/go" }] }, async ({ event, step }) => {
  const options = { method: "POST", headers: { authorization: `Bearer ${SECRET}`, "content-type": "application/json" }, body: JSON.stringify({ q: "meaning" }) };
  const response = await step.fetch({ id: "call", retries: event.data.retries ?? 3 }, event.data.url, options);
  const body = await response.text();
  const cookies = response.headers.getSetCookie();
  return { status: response.status, type: response.headers.get("content-type"), body, ...(cookies.length > 0 && { cookies }) };
});

describe.each(STORE_KINDS)("step.fetch on %s", (store) => {
  let stack: Stack;
  const target = new Target();
  /** App requests in flight, and every interval one was. */
  let inFlight = 0;
  const appBusy: Array<{ from: number; to: number }> = [];
  beforeAll(async () => {
    await target.start();
    stack = await startStack({
      store,
      client,
      functions: [call],
      intercept: async (request, app) => {
        inFlight++;
        const from = Date.now();
        try {
          return await app(request);
        } finally {
          inFlight--;
          appBusy.push({ from, to: Date.now() });
        }
      },
    });
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
    await target.close();
  });

  const go = async (path: string, retries?: number) => {
    const key = `${store}-${Math.random().toString(36).slice(2)}`;
    const [eventId] = await stack.send({ name: "fetch/go", data: { url: `${target.url}${path}?key=${key}`, ...(retries !== undefined && { retries }) } });
    return { eventId: eventId!, key };
  };
  const stepRow = async (runId: string) => (await stack.store.transaction((tx) => tx.lockRun(runId)))!.steps.find((s) => s.id === "call");

  it("makes the request from the executor: no app invocation is open while the other side takes 2 s, and the key is never stored in the clear", async () => {
    const { eventId, key } = await go("/slow");
    // While the request is out: the step is planned, its request sealed.
    let sealedSeen = false;
    for (let tries = 0; tries < 200 && !sealedSeen; tries++) {
      const [run] = await stack.runsOf(eventId);
      const step = run && (await stepRow(run.id));
      if (step?.status === "planned" && target.calls.some((c) => c.path.includes(key) && c.end === undefined)) {
        const stored = JSON.stringify(step.output);
        expect(stored).toContain("sealedRequest");
        expect(stored).not.toContain(SECRET);
        expect(stored).not.toContain(key);
        sealedSeen = true;
      }
      if (!sealedSeen) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(sealedSeen).toBe(true);
    const run = await stack.waitForRun(eventId);
    expect(run.output).toEqual({ status: 200, type: "application/json", body: JSON.stringify({ answer: 42, got: { q: "meaning" } }) });
    const made = target.calls.find((c) => c.path.includes(key))!;
    expect(made.authorization).toBe(`Bearer ${SECRET}`);
    // No request to the app was open while the other side worked on it.
    const overlapping = appBusy.filter((busy) => busy.from < made.end! && busy.to > made.at);
    expect(overlapping).toEqual([]);
    // Once answered, the step holds the response; the request is gone with its key, and the
    // answer's URL is stored without its query (which may carry a key too).
    const stored = JSON.stringify((await stepRow(run.id))!.output);
    expect(stored).not.toContain(SECRET);
    expect(stored).not.toContain(key);
    expect(stored).not.toContain("sealedRequest");
    expect(stack.log.lines.join("\n")).not.toContain(SECRET);
  });

  /** The run of `eventId` once its request has reached the target (and is not answered yet). */
  const requestOut = async (eventId: string, key: string) => {
    for (let tries = 0; tries < 200; tries++) {
      const [run] = await stack.runsOf(eventId);
      if (run && target.calls.some((c) => c.path.includes(key) && c.end === undefined)) return run.id;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`the request of ${eventId} never reached the target`);
  };
  /** When the target saw the request of `key` dropped unanswered (within 5 s), or undefined. */
  const droppedAt = async (key: string) => {
    for (let tries = 0; tries < 200; tries++) {
      const dropped = target.calls.find((c) => c.path.includes(key))?.dropped;
      if (dropped !== undefined) return dropped;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    return undefined;
  };

  it("stops a request on its way when its run is cancelled, through the executor making it or another one", async () => {
    // Through the executor making the request: at once.
    const here = await go("/hang");
    const runHere = await requestOut(here.eventId, here.key);
    expect((await fetch(`${stack.executor.url}/api/runs/${runHere}/cancel`, { method: "POST" })).status).toBe(200);
    const cancelAnsweredAt = Date.now();
    // Aborted as the cancel committed, before its answer: the target hears it moments later, not a look (a second) later.
    expect((await droppedAt(here.key))! - cancelAnsweredAt).toBeLessThan(250);
    // Through another executor sharing the store (started once the request is out, so the first makes it): at its next look.
    const there = await go("/hang");
    const runThere = await requestOut(there.eventId, there.key);
    const other = new Executor({ store: stack.store, signingKey: DEV_SIGNING_KEY, log: silentLogger, registryRefreshMs: 0 });
    expect((await other.cancelRun(runThere))?.status).toBe("cancelled");
    const otherCancelledAt = Date.now();
    expect((await droppedAt(there.key))! - otherCancelledAt).toBeLessThan(3_000);
    for (const runId of [runHere, runThere]) {
      const run = await stack.getRun(runId);
      expect(run.status).toBe("cancelled");
      expect(run.steps.find((s) => s.id === "call")?.status).not.toBe("completed");
    }
    expect(target.calls.filter((c) => c.path.includes(here.key) || c.path.includes(there.key))).toHaveLength(2);
  });

  it("keeps the answer of a request a pause caught on its way: the resumed run does not make it again", async () => {
    const { eventId, key } = await go("/slow");
    const runId: string | undefined = await requestOut(eventId, key);
    expect((await fetch(`${stack.executor.url}/api/runs/${runId}/pause`, { method: "POST" })).status).toBe(200);
    // The answer comes while the run is paused: the step holds it, and nothing moves the run on.
    let step = await stepRow(runId!);
    for (let tries = 0; tries < 200 && step?.status !== "completed"; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      step = await stepRow(runId!);
    }
    expect(step?.status).toBe("completed");
    expect((await stack.getRun(runId!)).paused).toMatchObject({ by: "operator" });
    expect((await fetch(`${stack.executor.url}/api/runs/${runId}/resume`, { method: "POST" })).status).toBe(200);
    const run = await stack.waitForRun(eventId);
    expect(run.output).toMatchObject({ status: 200, body: JSON.stringify({ answer: 42, got: { q: "meaning" } }) });
    expect(target.calls.filter((c) => c.path.includes(key))).toHaveLength(1);
  });

  it("fails the step for good when the answer passes what a step stores, and stops reading an answer that never ends", async () => {
    for (const path of ["/huge", "/endless"]) {
      const { eventId, key } = await go(path);
      const run = await stack.waitForRun(eventId, { timeoutMs: 20_000 });
      expect(run.status, path).toBe("failed");
      expect(run.steps.find((s) => s.id === "call")?.error, path).toMatchObject({ name: "FetchResponseTooLarge", message: expect.stringMatching(/more than 4 MB, the most a step stores/) });
      // Once: a response too large stays too large.
      expect(target.calls.filter((c) => c.path.includes(key)), path).toHaveLength(1);
    }
    expect(target.calls.find((c) => c.path.startsWith("/endless"))?.dropped).toBeDefined();
  });

  it("a 429 with Retry-After is tried again exactly that much later", async () => {
    const { eventId, key } = await go("/limited");
    const run = await stack.waitForRun(eventId);
    expect(run.output).toMatchObject({ status: 200, body: JSON.stringify({ n: 2 }) });
    const [first, second] = target.calls.filter((c) => c.path.includes(key));
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1_000 - 20);
  });

  it("a 5xx is retried with the step's backoff; another status is the function's to read; a failure past the retries fails the step", async () => {
    const flaky = await go("/flaky");
    expect((await stack.waitForRun(flaky.eventId)).output).toMatchObject({ status: 200, body: JSON.stringify({ n: 3 }) });
    expect(target.calls.filter((c) => c.path.includes(flaky.key))).toHaveLength(3);
    const missing = await go("/missing");
    expect((await stack.waitForRun(missing.eventId)).output).toMatchObject({ status: 404, body: JSON.stringify({ error: "no such thing" }) });
    expect(target.calls.filter((c) => c.path.includes(missing.key))).toHaveLength(1);
    const down = await go("/flaky", 1);
    const failed = await stack.waitForRun(down.eventId);
    expect(failed.status).toBe("failed");
    expect(failed.error?.message).toMatch(/step\.fetch POST http:\/\/127\.0\.0\.1:\d+\/flaky answered 503/);
    expect(failed.error?.message).not.toContain(down.key);
    // Failed for good: its request (and key) are not kept.
    expect(JSON.stringify((await stepRow(failed.id))!.output ?? null)).not.toContain("sealedRequest");
  });

  it("gives the function every Set-Cookie of the answer, in order, not only the last", async () => {
    const { eventId } = await go("/cookies");
    expect((await stack.waitForRun(eventId)).output).toMatchObject({ status: 200, cookies: COOKIES });
  });

  it("does not follow a redirect (it could lead to an address the executor never calls): the function gets the 3xx", async () => {
    const { eventId } = await go("/elsewhere");
    expect((await stack.waitForRun(eventId)).output).toMatchObject({ status: 307 });
  });

  it("refuses a cloud metadata address (where the executor's credentials live) with a message", async () => {
    const [eventId] = await stack.send({ name: "fetch/go", data: { url: "http://169.254.169.254/latest/meta-data/" } });
    const run = await stack.waitForRun(eventId!);
    expect(run.status).toBe("failed");
    expect(run.error?.message).toMatch(/step\.fetch "call": the URL.s host 169\.254\.169\.254 is a metadata address, which the executor never calls/);
  });
});
