/**
 * `GET /api/runs`: runs newest first, filtered by function, status and start time, a page at a
 * time through a cursor that runs started meanwhile do not shift; a wrong parameter is a 400
 * that names it. Over real HTTP, on every store.
 */
import type { RunPage } from "@stepwise/engine";
import { NonRetriableError, Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, STORE_KINDS, type Stack } from "../support/stack.ts";

const client = new Stepwise({ id: "listing", dev: true, schemas: { "list/a": z.object({ n: z.number() }), "list/b": z.object({ n: z.number() }) } });
const a = client.createFunction({ id: "a", triggers: [{ event: "list/a" }] }, async ({ event, step }) => step.run("one", () => event.data.n));
const b = client.createFunction({ id: "b", triggers: [{ event: "list/b" }], retries: 0 }, async ({ step }) =>
  step.run("fails", () => {
    throw new NonRetriableError("b always fails");
  }),
);

describe.each(STORE_KINDS)("the run list on %s", (kind) => {
  let stack: Stack;
  const get = async (query: string) => {
    const response = await fetch(`${stack.executor.url}/api/runs${query}`);
    return { status: response.status, body: (await response.json()) as RunPage & { error?: string } };
  };
  /** Every page of `query`, `limit` at a time, in order. */
  const all = async (query: string, limit: number) => {
    const pages: RunPage[] = [];
    let cursor: string | null = null;
    do {
      const { status, body } = await get(`?${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`);
      expect(status).toBe(200);
      pages.push(body);
      cursor = body.next;
    } while (cursor && pages.length < 20);
    return pages;
  };
  const sendAndWait = async (events: Array<{ name: string; data: { n: number } }>) => {
    const ids: string[] = [];
    // One at a time, so their runs start in a known order.
    for (const event of events) ids.push(...(await stack.send(event)));
    return Promise.all(ids.map((id) => stack.waitForRun(id)));
  };

  beforeAll(async () => {
    stack = await startStack({ store: kind, client, functions: [a, b] });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("lists a function's runs newest first, a page at a time, each once", async () => {
    const runs = await sendAndWait(Array.from({ length: 7 }, (_, n) => ({ name: "list/a", data: { n } })));
    const pages = await all(`function=${runs[0]!.functionId}`, 3);
    expect(pages.map((page) => page.runs.length)).toEqual([3, 3, 1]);
    expect(pages.at(-1)!.next).toBeNull();
    const listed = pages.flatMap((page) => page.runs);
    expect(listed.map((run) => run.id)).toEqual(runs.map((run) => run.id).reverse());
    expect(listed[0]).toMatchObject({ functionId: runs[0]!.functionId, status: "completed", eventId: runs.at(-1)!.eventId });
    expect(listed[0]).not.toHaveProperty("steps");
  });

  it("runs started while a list is paged through do not shift its pages", async () => {
    const older = await sendAndWait(Array.from({ length: 4 }, (_, n) => ({ name: "list/a", data: { n } })));
    const fn = older[0]!.functionId;
    const first = (await get(`?function=${fn}&limit=2`)).body;
    await sendAndWait([{ name: "list/a", data: { n: 99 } }]);
    const second = (await get(`?function=${fn}&limit=2&cursor=${first.next}`)).body;
    expect([...first.runs, ...second.runs].map((run) => run.id)).toEqual(older.map((run) => run.id).reverse());
  });

  it("filters by status and by when runs started", async () => {
    const before = new Date(Date.now() - 1);
    const [failed] = await sendAndWait([{ name: "list/b", data: { n: 1 } }]);
    expect(failed!.status).toBe("failed");
    const fn = failed!.functionId;
    const failedOnes = (await get(`?function=${fn}&status=failed`)).body.runs;
    expect(failedOnes.map((run) => run.id)).toContain(failed!.id);
    expect(failedOnes[0]!.error?.message).toMatch(/b always fails/);
    expect((await get(`?function=${fn}&status=completed,queued`)).body.runs).toEqual([]);
    expect((await get(`?function=${fn}&since=${before.toISOString()}`)).body.runs.map((run) => run.id)).toEqual([failed!.id]);
    expect((await get(`?function=${fn}&until=${before.toISOString()}`)).body.runs.map((run) => run.id)).not.toContain(failed!.id);
    expect((await get(`?status=failed&limit=500`)).body.runs.map((run) => run.id)).toContain(failed!.id);
  });

  it("filters by a CEL condition over the run and its event, a page at a time", async () => {
    const runs = await sendAndWait(Array.from({ length: 6 }, (_, n) => ({ name: "list/a", data: { n: 100 + n } })));
    const fn = runs[0]!.functionId;
    const q = encodeURIComponent("event.data.n >= 100 && int(event.data.n) % 2 == 1 && run.status == 'completed'");
    const pages = await all(`function=${fn}&q=${q}`, 2);
    // 101, 103 and 105, newest first: two, then one, then the end.
    expect(pages.flatMap((page) => page.runs.map((run) => run.id))).toEqual([runs[5]!.id, runs[3]!.id, runs[1]!.id]);
    expect(pages.at(-1)!.next).toBeNull();
    // Nothing matches: an empty page that says the list is over.
    expect((await get(`?function=${fn}&q=${encodeURIComponent("event.data.n == -1")}`)).body).toEqual({ runs: [], next: null });
    // A field some events lack is no match, not an error.
    expect((await get(`?function=${fn}&q=${encodeURIComponent("event.data.missing.deep == 1")}`)).status).toBe(200);
  });

  it.each([
    ["q=event.data.n%20%3E%3E%201", /Invalid q "event.data.n >> 1"/],
    [`q=${encodeURIComponent('event.name.matches("(a+)+$")')}`, /matches\(\) is not allowed in q/],
    [`q=${encodeURIComponent("event.data.list.exists(x, x > 1)")}`, /exists\(\) is not allowed in q/],
    ["q=%20", /Invalid q " ": it is empty/],
    ["status=done", /Invalid status "done".*queued, running/],
    ["limit=0", /Invalid limit "0".*1 to 500/],
    ["limit=lots", /Invalid limit/],
    ["since=yesterday", /Invalid since "yesterday".*ISO 8601/],
    ["since=2026-12-05T09:00:00", /Invalid since .*with its zone/],
    ["since=0000-01-01", /Invalid since "0000-01-01"/],
    ["function=a%00b", /Parameter "function" contains a NUL/],
    ["status=failed&status=completed", /Parameter "status" given 2 times/],
    [`cursor=${btoa(JSON.stringify(["0000-01-01T00:00:00.000000Z", "x"]))}`, /Invalid cursor/],
    ["since=2026-12-05T10:00:00Z&until=2026-12-05T09:00:00Z", /since .* must be before until/],
    ["cursor=bm90IGEgY3Vyc29y", /Invalid cursor.*"next" of the page before/],
    ["cursor=%%%", /Invalid cursor/],
    ["fn=a", /Unknown parameter "fn"/],
  ])("answers %s with a 400 that says what is wrong", async (query, message) => {
    const { status, body } = await get(`?${query}`);
    expect(status).toBe(400);
    expect(body.error).toMatch(message);
  });
});
