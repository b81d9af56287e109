/**
 * `GET /api/events`: events newest first by arrival, filtered by name and time of arrival, a
 * page at a time through a cursor that events arriving meanwhile do not shift, each with the
 * runs it started. A wrong parameter is a 400 that names it. Over real HTTP, on every store.
 */
import type { EventPage } from "@stepwise/engine";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, STORE_KINDS, type Stack } from "../support/stack.ts";

const client = new Stepwise({ id: "events", dev: true, schemas: { "shop/visited": z.object({ n: z.number() }), "shop/ignored": z.object({ n: z.number() }) } });
const greet = client.createFunction({ id: "greet", triggers: [{ event: "shop/visited" }] }, async ({ event, step }) => step.run("hello", () => event.data.n));
const count = client.createFunction({ id: "count", triggers: [{ event: "shop/visited" }] }, async ({ event }) => event.data.n);

describe.each(STORE_KINDS)("the event list on %s", (kind) => {
  let stack: Stack;
  const get = async (query: string) => {
    const response = await fetch(`${stack.executor.url}/api/events${query}`);
    return { status: response.status, body: (await response.json()) as EventPage & { error?: string } };
  };

  beforeAll(async () => {
    stack = await startStack({ store: kind, client, functions: [greet, count] });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("lists events newest first with the runs each started, a page at a time", async () => {
    const since = new Date(Date.now() - 1).toISOString();
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) ids.push(...(await stack.send({ name: "shop/visited", data: { n } })));
    await Promise.all(ids.flatMap((id) => [stack.waitForRun(id, { functionId: "events-greet" }), stack.waitForRun(id, { functionId: "events-count" })]));

    const first = await get(`?name=shop/visited&since=${since}&limit=2`);
    expect(first.status).toBe(200);
    expect(first.body.events.map((event) => event.id)).toEqual([ids[4], ids[3]]);
    expect(first.body.events[0]).toMatchObject({ name: "shop/visited", data: { n: 4 } });
    expect(first.body.events[0]!.runs.map((run) => [run.functionId, run.status]).sort()).toEqual([
      ["events-count", "completed"],
      ["events-greet", "completed"],
    ]);
    // An event arriving meanwhile does not shift the pages after the first.
    await stack.send({ name: "shop/visited", data: { n: 99 } });
    const second = await get(`?name=shop/visited&since=${since}&limit=2&cursor=${first.body.next}`);
    const third = await get(`?name=shop/visited&since=${since}&limit=2&cursor=${second.body.next}`);
    expect([...second.body.events, ...third.body.events].map((event) => event.id)).toEqual([ids[2], ids[1], ids[0]]);
    expect(third.body.next).toBeNull();
  });

  it("shows an event that started no run with an empty list, and filters by name", async () => {
    const [ignored] = await stack.send({ name: "shop/ignored", data: { n: 1 } });
    const { body } = await get("?name=shop/ignored&limit=1");
    expect(body.events).toEqual([expect.objectContaining({ id: ignored, runs: [] })]);
    expect((await get("?limit=50")).body.events.map((event) => event.id)).toContain(ignored);
  });

  it("refuses a wrong parameter with a 400 that names it", async () => {
    const cases: Array<[string, RegExp]> = [
      ["?nmae=x", /Unknown parameter "nmae": an event list takes name, since, until, cursor, limit/],
      ["?since=yesterday", /Invalid since "yesterday"/],
      ["?limit=0", /Invalid limit "0"/],
      ["?cursor=abc", /Invalid cursor "abc"/],
      ["?name=a&name=b", /Parameter "name" given 2 times/],
    ];
    for (const [query, error] of cases) {
      const { status, body } = await get(query);
      expect(status, query).toBe(400);
      expect(body.error, query).toMatch(error);
    }
  });
});

describe("the event routes outside dev mode", () => {
  it("need the API key to read events, HEAD included", async () => {
    const keyed = new Stepwise({ id: "events", dev: false, signingKey: "k" });
    const stack = await startStack({ store: "pglite", client: keyed, functions: [], executor: { dev: false, signingKey: "k", eventKey: "e", apiKey: "api" } });
    try {
      for (const method of ["GET", "HEAD"]) {
        for (const path of ["/api/events", "/api/events/some-event", "/api/events/some-event/runs"]) {
          expect((await fetch(`${stack.executor.url}${path}`, { method })).status, `${method} ${path}`).toBe(401);
        }
      }
      expect((await fetch(`${stack.executor.url}/api/events/some-event`, { headers: { authorization: "Bearer api" } })).status).toBe(404);
    } finally {
      await stack.close();
    }
  });
});
