/**
 * Live streams: what a run publishes reaches `GET /api/runs/:id/stream` (and the realtime client)
 * while the run works, once each, in order, beside its transitions; a reader that reconnects
 * resumes; a browser reads with a stream token its app minted, and with nothing else. Over real
 * HTTP, on every store; the refusals (tokens, bad publishes, an executor that drops publishes)
 * on the embedded one, since they are decided before the store is reached.
 */
import { HEADERS, PROTOCOL_VERSION, PUBLISH_ROUTE, sign, type RunMessage } from "@stepwise/protocol";
import { Stepwise, type Logger } from "@stepwise/sdk";
import { subscribe, StreamRefusedError, type StreamedRun } from "@stepwise/sdk/realtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, STORE_KINDS, type Stack } from "../support/stack.ts";

const KEYS = { signingKey: "live-key", eventKey: "live-events", apiKey: "live-api" };
const schemas = {
  "report/start": z.object({ pages: z.number(), tag: z.string() }),
  "report/go": z.object({ tag: z.string() }),
  "report/bad": z.object({ what: z.enum(["topic", "size", "json"]) }),
};

function app(options: { fetch?: typeof fetch } = {}) {
  const lines: string[] = [];
  const logger: Logger = { debug: () => {}, info: () => {}, warn: (...args) => lines.push(args.join(" ")), error: (...args) => lines.push(args.join(" ")) };
  const client = new Stepwise({ id: "live", dev: false, signingKey: KEYS.signingKey, eventKey: KEYS.eventKey, schemas, logger, ...options });
  const report = client.createFunction({ id: "report", triggers: [{ event: "report/start" }] }, async ({ event, step, publish }) => {
    // The body runs again on every invocation: these are sent only when it runs for the first time.
    await publish("status", "started");
    for (let page = 1; page <= event.data.pages; page++) {
      await step.run(`page-${page}`, async () => {
        await publish("progress", { page });
        return page;
      });
    }
    await publish("status", "read");
    await step.waitForEvent("go", { event: "report/go", match: "data.tag", timeout: "1h" });
    await publish("status", "finishing");
    return step.run("summary", () => `${event.data.pages} pages`);
  });
  const bad = client.createFunction({ id: "bad", triggers: [{ event: "report/bad" }] }, async ({ event, publish }) => {
    const attempt = { topic: () => publish("", 1), size: () => publish("big", "x".repeat(70 * 1024)), json: () => publish("cyclic", { n: 1n }) }[event.data.what];
    try {
      await attempt();
      return "sent";
    } catch (error) {
      return `${(error as Error).name}: ${(error as Error).message}`;
    }
  });
  return { client, functions: [report, bad], lines };
}

/** Reads a stream to its end with fetch: the events, parsed. */
async function readAll(url: string, init?: RequestInit): Promise<Array<{ event: string; id: string; data: any }>> {
  const response = await fetch(url, init);
  expect(response.status, await response.clone().text().catch(() => "")).toBe(200);
  const events: Array<{ event: string; id: string; data: any }> = [];
  for (const block of (await response.text()).split("\n\n")) {
    const fields = Object.fromEntries(block.split("\n").filter((line) => line && !line.startsWith(":")).map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 2)]));
    if (fields.data) events.push({ event: fields.event ?? "message", id: fields.id ?? "", data: JSON.parse(fields.data) });
  }
  return events;
}

const expected = (pages: number) => [
  ["status", "started"],
  ...Array.from({ length: pages }, (_, i) => ["progress", { page: i + 1 }]),
  ["status", "read"],
  ["status", "finishing"],
];

describe.each(STORE_KINDS)("live streams on %s", (kind) => {
  let stack: Stack;
  let live: ReturnType<typeof app>;
  beforeAll(async () => {
    live = app();
    stack = await startStack({ store: kind, ...live, executor: { dev: false, ...KEYS } });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("delivers what the run publishes while it works, once each and in order, then its end", async () => {
    const tag = `${kind}-progress`;
    const [eventId] = await stack.send({ name: "report/start", data: { pages: 3, tag } });
    const waiting = await stack.waitForRun(eventId!, { status: "waiting" });
    const { url } = await live.client.streamToken(waiting.id, { publicUrl: stack.executor.url });
    const seen: RunMessage[] = [];
    let statusWhenRead: string | undefined;
    const subscription = subscribe(url, {
      onSnapshot: (run) => (statusWhenRead ??= run.status),
      onMessage: (message) => {
        seen.push(message);
        // Everything before the wait is in; the run goes on only now.
        if (message.data === "read") void stack.send({ name: "report/go", data: { tag } });
      },
    });
    const ended: StreamedRun = await subscription.done;

    expect(statusWhenRead).toBe("waiting");
    expect(ended).toMatchObject({ id: waiting.id, status: "completed", output: "3 pages" });
    // The body ran again after the wait (a new invocation) without sending "started" or "read" again.
    expect(seen.map((m) => [m.topic, m.data])).toEqual(expected(3));
    expect(seen.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("resumes after the last message a reader saw, and keeps only the topics asked for", async () => {
    const tag = `${kind}-resume`;
    const [eventId] = await stack.send({ name: "report/start", data: { pages: 4, tag } });
    const waiting = await stack.waitForRun(eventId!, { status: "waiting" });
    await stack.send({ name: "report/go", data: { tag } });
    const run = await stack.waitForRun(eventId!);
    expect(run.status).toBe("completed");
    const { url } = await live.client.streamToken(run.id, { publicUrl: stack.executor.url });

    const resumed = await readAll(url, { headers: { "last-event-id": "3" } });
    expect(resumed.filter((e) => e.event === "message").map((e) => e.data.seq)).toEqual([4, 5, 6, 7]);
    expect(resumed.at(-1)).toMatchObject({ event: "end", id: "7" });
    const progressOnly = await readAll(`${url}&topic=progress`);
    expect(progressOnly.filter((e) => e.event === "message").map((e) => e.data.data)).toEqual([1, 2, 3, 4].map((page) => ({ page })));
    expect(waiting.id).toBe(run.id);

    // The realtime client over a connection that drops after every third event: it reconnects
    // from where it was, and every message arrives once.
    let connections = 0;
    const cutting: typeof fetch = async (input, init) => {
      connections++;
      const response = await fetch(input, init);
      // Passes the first three events through, then fails the body as a reset connection does.
      let text = "";
      const body = response.body!.pipeThrough(new TextDecoderStream()).pipeThrough(
        new TransformStream<string, Uint8Array>({
          transform(chunk, controller) {
            text += chunk;
            const blocks = text.split("\n\n");
            if (blocks.length > 3) {
              controller.enqueue(new TextEncoder().encode(blocks.slice(0, 3).join("\n\n") + "\n\n"));
              controller.error(new Error("connection reset"));
            }
          },
          flush(controller) {
            controller.enqueue(new TextEncoder().encode(text));
          },
        }),
      );
      return new Response(body, { status: response.status, headers: response.headers });
    };
    const seen: RunMessage[] = [];
    const ended = await subscribe(url, { onMessage: (message) => seen.push(message) }, { fetch: cutting, retryMs: 10 }).done;
    expect(ended.status).toBe("completed");
    expect(seen.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(connections).toBeGreaterThan(2);
  });
});

describe("live streams: who may read and publish", () => {
  let stack: Stack;
  let live: ReturnType<typeof app>;
  let runId: string;
  beforeAll(async () => {
    live = app();
    // Mid-rotation: the app may already sign with the next key.
    stack = await startStack({ store: "pglite", ...live, executor: { dev: false, ...KEYS, signingKeyNext: "live-key-next" } });
    const [eventId] = await stack.send({ name: "report/start", data: { pages: 1, tag: "auth" } });
    runId = (await stack.waitForRun(eventId!, { status: "waiting" })).id;
  }, 60_000);
  afterAll(async () => stack?.close());

  it("lets a stream token read its own run's stream from any origin, and nothing else", async () => {
    const stream = `${stack.executor.url}/api/runs/${runId}/stream`;
    expect((await fetch(stream)).status).toBe(401);
    const { url, token } = await live.client.streamToken(runId, { publicUrl: stack.executor.url });
    const allowed = await fetch(url, { headers: { origin: "https://page.example" } });
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get("access-control-allow-origin")).toBe("*");
    await allowed.body?.cancel();

    const [otherEvent] = await stack.send({ name: "report/start", data: { pages: 1, tag: "other" } });
    const other = await stack.waitForRun(otherEvent!, { status: "waiting" });
    const refusals = [
      `${stack.executor.url}/api/runs/${other.id}/stream?token=${token}`,
      `${stream}?token=${token.slice(0, -1)}${token.endsWith("0") ? "1" : "0"}`,
      `${stream}?token=${(await new Stepwise({ id: "live", signingKey: "another-key" }).streamToken(runId)).token}`,
    ];
    // Minted by an app that already signs with the next key: allowed, as its requests are.
    const rotated = await new Stepwise({ id: "live", signingKey: "live-key-next" }).streamToken(runId, { publicUrl: stack.executor.url });
    const reading = await fetch(rotated.url);
    expect(reading.status).toBe(200);
    await reading.body?.cancel();
    for (const refused of refusals) {
      const answer = await fetch(refused);
      expect(answer.status, refused).toBe(401);
      expect(((await answer.json()) as { error: string }).error).toMatch(/stream token is expired, altered, or for another run/);
    }
    // An expired token, read with the realtime client: refused, not retried.
    const expiring = await live.client.streamToken(runId, { publicUrl: stack.executor.url, expiresIn: "1s" });
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await expect(subscribe(expiring.url, {}, { retryMs: 10 }).done).rejects.toBeInstanceOf(StreamRefusedError);
    await expect(live.client.streamToken(runId, { expiresIn: "30d" })).rejects.toThrow(/between 1s and 7d/);
  });

  it("refuses a publish that is unsigned, of another app, or too large, and stores none of it", async () => {
    const publish = async (body: unknown, key = KEYS.signingKey, signed = true) => {
      const text = JSON.stringify(body);
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (signed) headers[HEADERS.signature] = await sign(key, { method: "POST", target: PUBLISH_ROUTE, body: text });
      return fetch(`${stack.executor.url}${PUBLISH_ROUTE}`, { method: "POST", headers, body: text });
    };
    const message = (appId: string, data: unknown = "x") => ({ version: PROTOCOL_VERSION, run: { id: runId, appId }, messages: [{ topic: "forged", data }] });
    expect((await publish(message("live"), KEYS.signingKey, false)).status).toBe(401);
    expect((await publish(message("live"), "wrong-key")).status).toBe(401);
    const tooLarge = await publish(message("live", "y".repeat(70 * 1024)));
    expect(tooLarge.status).toBe(413);
    expect(((await tooLarge.json()) as { error: string }).error).toMatch(/over the 64 KB a message may hold/);
    const noRun = await publish({ ...message("live"), run: { id: "no-such-run", appId: "live" } });
    expect(noRun.status).toBe(404);
    const malformed = await publish({ version: PROTOCOL_VERSION, run: { id: runId, appId: "live" }, messages: [] });
    expect(malformed.status).toBe(400);
    const stored = await stack.store.readRunMessages(runId, 0, 100);
    expect(stored.map((m) => m.topic)).not.toContain("forged");
    // The same, signed properly, is taken.
    expect((await publish(message("live"))).status).toBe(200);
    expect((await stack.store.readRunMessages(runId, 0, 100)).map((m) => m.topic)).toContain("forged");
  });

  it("rejects a bad message in the function with a typed error that names the topic", async () => {
    const outputs: Record<string, unknown> = {};
    for (const what of ["topic", "size", "json"] as const) {
      const [eventId] = await stack.send({ name: "report/bad", data: { what } });
      outputs[what] = (await stack.waitForRun(eventId!)).output;
    }
    expect(outputs.topic).toMatch(/^TypeError: publish\(""[^)]*\): topic must not be empty/);
    expect(outputs.size).toMatch(/^RangeError: publish\("big", …\): data is \d+ bytes as JSON, over the 65536/);
    expect(outputs.json).toMatch(/^TypeError: publish\("cyclic", …\): data must be JSON/);
  });
});

describe.each([
  ["refuses the connection", async () => Promise.reject(new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) }))],
  ["answers 502 with an HTML page", async () => new Response("<html><body>Bad gateway</body></html>", { status: 502, headers: { "content-type": "text/html" } })],
  ["cuts its answer short", async () => new Response('{"ok":tr', { status: 200, headers: { "content-type": "application/json" } })],
] as const)("live streams when the way to the executor %s for publishes", (_name, fault) => {
  let stack: Stack;
  let live: ReturnType<typeof app>;
  beforeAll(async () => {
    const faulty: typeof fetch = (input, init) => (String(input instanceof Request ? input.url : input).endsWith(PUBLISH_ROUTE) ? fault() : fetch(input, init));
    live = app({ fetch: faulty });
    stack = await startStack({ store: "pglite", ...live, executor: { dev: false, ...KEYS } });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("completes the run all the same, and says once that progress was dropped", async () => {
    const tag = "faulty";
    const [eventId] = await stack.send({ name: "report/start", data: { pages: 2, tag } });
    await stack.waitForRun(eventId!, { status: "waiting" });
    await stack.send({ name: "report/go", data: { tag } });
    const run = await stack.waitForRun(eventId!);
    expect(run).toMatchObject({ status: "completed", output: "2 pages" });
    expect(run.steps.map((step) => [step.id, step.status])).toEqual([
      ["page-1", "completed"],
      ["page-2", "completed"],
      ["go", "completed"],
      ["summary", "completed"],
    ]);
    const notices = live.lines.filter((line) => line.includes(PUBLISH_ROUTE));
    expect(notices.length).toBeGreaterThan(0);
    expect(notices[0]).toContain(`run ${run.id}`);
    expect(await stack.store.readRunMessages(run.id, 0, 100)).toHaveLength(0);
  });
});
