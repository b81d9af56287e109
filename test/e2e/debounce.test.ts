/**
 * `debounce`: one run per burst of a key's events, started a quiet period after the last one,
 * with that last event; the runs of the events it replaced are `skipped`, naming it. A `timeout`
 * bounds how long a steady stream holds the start back. Events are sent through two executors
 * sharing the store, over real HTTP, on every store.
 */
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startTwoExecutors, type TwoExecutorStack } from "../support/stack.ts";

/** When each run reached its step, with the event's `n`, by document. */
const ran = new Map<string, Array<{ n: number; at: number }>>();

const edit = z.object({ doc: z.string(), n: z.number() });
const client = new Stepwise({ id: "deb", dev: true, schemas: { "doc/edited": edit, "doc/typed": edit } });
const record = ({ doc, n }: z.infer<typeof edit>) => {
  ran.set(doc, [...(ran.get(doc) ?? []), { n, at: Date.now() }]);
  return n;
};
const index = client.createFunction({ id: "index", triggers: [{ event: "doc/edited" }], debounce: { period: "1s", key: "event.data.doc" } }, async ({ event, step }) =>
  step.run("index", () => record(event.data)),
);
/** Typing never pauses for a second: only the timeout starts its runs. */
const preview = client.createFunction(
  { id: "preview", triggers: [{ event: "doc/typed" }], debounce: { period: "1s", key: "event.data.doc", timeout: "1500ms" } },
  async ({ event, step }) => step.run("preview", () => record(event.data)),
);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(STORE_KINDS)("debounce on %s", (store) => {
  let stack: TwoExecutorStack;
  beforeAll(async () => {
    stack = await startTwoExecutors({ store, client, functions: [index, preview] });
  });
  afterAll(async () => stack?.close());

  /** Sends one event, through the first executor or the second in turn. */
  const send = async (name: "doc/edited" | "doc/typed", doc: string, n: number): Promise<string> => {
    const data = { doc, n };
    const [id] = n % 2 === 0 ? await stack.send({ name, data }) : (await stack.second.sendEvents([{ name, data }])).ids;
    return id!;
  };

  it("runs once per burst, with its last event, a quiet period after it; the others are skipped, naming that run", async () => {
    const doc = `d-${store}`;
    const ids: string[] = [];
    let lastSentAt = 0;
    for (let n = 0; n < 4; n++) {
      lastSentAt = Date.now();
      ids.push(await send("doc/edited", doc, n));
      await sleep(150);
    }
    const other = await send("doc/edited", `${doc}-other`, 0);
    const runs = await Promise.all(ids.map((id) => stack.waitForRun(id)));
    expect(runs.map((run) => run.status)).toEqual(["skipped", "skipped", "skipped", "completed"]);
    expect(runs[3]!.output).toBe(3);
    for (const [i, run] of runs.slice(0, 3).entries()) {
      expect(run.error).toEqual({ name: "RunSkipped", message: `debounce: replaced by run ${runs[i + 1]!.id} for the later event ${ids[i + 1]} (event.data.doc = "${doc}")` });
    }
    expect(ran.get(doc)).toHaveLength(1);
    expect(ran.get(doc)![0]!.at - lastSentAt).toBeGreaterThanOrEqual(950);
    // Another document's burst is its own.
    expect(await stack.waitForRun(other)).toMatchObject({ status: "completed", output: 0 });
  });

  it("starts a run at the timeout while events keep coming, with the latest one; the rest form the next burst", async () => {
    const doc = `stream-${store}`;
    const ids: string[] = [];
    const firstAt = Date.now();
    for (let n = 0; n < 9; n++) {
      ids.push(await send("doc/typed", doc, n));
      await sleep(300);
    }
    const runs = await Promise.all(ids.map((id) => stack.waitForRun(id)));
    const completed = runs.filter((run) => run.status === "completed");
    // The quiet period never passed while the stream lasted (2.7 s): the timeout started one
    // run about 1.5 s in; the events after it are a second burst, which ends with the last.
    expect(completed.length).toBeGreaterThanOrEqual(2);
    expect(runs.at(-1)!.status).toBe("completed");
    const first = ran.get(doc)![0]!;
    expect(first.at - firstAt).toBeLessThan(2_600);
    expect(first.n).toBeGreaterThanOrEqual(3);
    // Every event ran or was replaced by a later one of the same burst: none is lost.
    for (const run of runs.filter((r) => r.status === "skipped")) expect(run.error?.message).toMatch(/^debounce: replaced by run /);
    expect(runs.filter((run) => run.status !== "completed" && run.status !== "skipped")).toEqual([]);
  });

  it("refuses at sync options that cannot hold beside it, naming the function and the option, and registers nothing", async () => {
    const description = {
      appId: `deb-bad-${store.replace("+", "-")}`,
      url: "http://127.0.0.1:9/api/durable",
      sdk: "raw",
      functions: [{ id: "ok", triggers: [{ event: "a/b" }], retries: 0 }, { id: "digest", triggers: [{ event: "a/b" }], retries: 0, debounce: { period: "5s" }, throttle: { limit: 1, period: "1m" } }],
    };
    await expect(stack.executor.executor.syncApp(description)).rejects.toThrow(/^Invalid app description: function "digest" \(functions\.1\): throttle: cannot be combined with debounce/);
    expect((await stack.executor.executor.listFunctions()).map((fn) => fn.appId)).not.toContain(description.appId);
  });
});

describe("debounce in the SDK", () => {
  const define = (options: Record<string, unknown>) => () =>
    client.createFunction({ id: "f", triggers: [{ event: "doc/edited" }], ...options } as Parameters<typeof client.createFunction>[0], () => {});

  it("refuses a period outside 1s-7d and a timeout shorter than the period, naming the option", () => {
    expect(define({ debounce: { period: "500ms" } })).toThrow(/createFunction\("f"\): debounce\.period: must be between 1s and 7d, got "500ms"/);
    expect(define({ debounce: { period: "5s", timeout: "2s" } })).toThrow(/debounce\.timeout: must be at least the period \("5s"\), got "2s"/);
  });

  it("refuses options that cannot hold beside it", () => {
    const debounce = { period: "5s" };
    expect(define({ debounce, rateLimit: { limit: 1, period: "1m" } })).toThrow(/rateLimit: cannot be combined with debounce/);
    expect(define({ debounce, throttle: { limit: 1, period: "1m" } })).toThrow(/throttle: cannot be combined with debounce/);
    expect(define({ debounce, singleton: { mode: "skip" } })).toThrow(/singleton: cannot be combined with debounce/);
    expect(define({ debounce, priority: { run: "10" } })).toThrow(/priority: cannot be combined with debounce/);
    expect(define({ debounce, timeouts: { start: "5s" } })).toThrow(/timeouts\.start: must be longer than debounce\.period \("5s"\)/);
    expect(define({ debounce, timeouts: { finish: "2s" } })).toThrow(/timeouts\.finish: must be longer than debounce\.period \("5s"\)/);
    expect(define({ debounce, timeouts: { start: "6s", finish: "1m" }, concurrency: 1, idempotency: "event.data.doc" })).not.toThrow();
  });
});
