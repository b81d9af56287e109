/**
 * `rateLimit`: at most `limit` runs start per `period` (per key), across separate sends, one
 * burst and two executors; an event over the limit is stored and its run is `skipped`, with a
 * reason the run API shows. Over real HTTP on every store.
 */
import { DEV_SIGNING_KEY } from "@stepwise/protocol";
import { Executor, silentLogger, type RunView } from "@stepwise/engine";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const bodies = new Map<string, number>();
const client = new Stepwise({ id: "rl", dev: true, schemas: { "user/synced": z.object({ userId: z.string(), n: z.number() }) } });
const sync = client.createFunction(
  { id: "sync", triggers: [{ event: "user/synced" }], rateLimit: { limit: 2, period: "1m", key: "event.data.userId" } },
  async ({ event, step }) =>
    step.run("sync", () => {
      bodies.set(event.data.userId, (bodies.get(event.data.userId) ?? 0) + 1);
      return event.data.n;
    }),
);
const pulse = client.createFunction({ id: "pulse", triggers: [{ event: "pulse" }], rateLimit: { limit: 1, period: "1s" } }, async () => "beat");

describe.each(STORE_KINDS)("rateLimit on %s", (store) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store, client, functions: [sync, pulse] });
  });
  afterAll(async () => stack?.close());

  async function outcomes(ids: string[]): Promise<RunView[]> {
    return Promise.all(ids.map(async (id) => stack.waitForRun(id)));
  }

  it("starts `limit` runs per key in a burst and skips the rest, saying why", async () => {
    const userId = `u-${store}`;
    const ids = await stack.send([1, 2, 3, 4, 5].map((n) => ({ name: "user/synced", data: { userId, n } })));
    const runs = await outcomes(ids);
    expect(runs.map((run) => run.status)).toEqual(["completed", "completed", "skipped", "skipped", "skipped"]);
    expect(runs[2]!.error).toEqual({ name: "RunSkipped", message: `rateLimit: 2 run(s) per 1m for event.data.userId = "${userId}" already started` });
    expect(runs[2]!.steps).toEqual([]);
    expect(bodies.get(userId)).toBe(2);
    // Another key has a limit of its own.
    const [other] = await stack.send({ name: "user/synced", data: { userId: `${userId}-b`, n: 9 } });
    expect((await stack.waitForRun(other!)).status).toBe("completed");
  });

  it("lets a run start again once the period has come round", async () => {
    const [first] = await stack.send({ name: "pulse", data: {} });
    const [second] = await stack.send({ name: "pulse", data: {} });
    expect((await outcomes([first!, second!])).map((run) => run.status)).toEqual(["completed", "skipped"]);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const [third] = await stack.send({ name: "pulse", data: {} });
    expect((await stack.waitForRun(third!)).status).toBe("completed");
  });

  it("holds across two executors receiving events at once", async () => {
    const second = new Executor({ store: stack.store, signingKey: DEV_SIGNING_KEY, log: silentLogger, registryRefreshMs: 0 });
    await second.start();
    try {
      const userId = `race-${store}`;
      const sent = await Promise.all(
        Array.from({ length: 6 }, (_, n) =>
          n % 2 === 0
            ? stack.send({ name: "user/synced", data: { userId, n } })
            : second.sendEvents({ name: "user/synced", data: { userId, n } }).then((result) => result.ids),
        ),
      );
      const runs = await outcomes(sent.map((ids) => ids[0]!));
      expect(runs.filter((run) => run.status === "completed")).toHaveLength(2);
      expect(runs.filter((run) => run.status === "skipped")).toHaveLength(4);
      expect(bodies.get(userId)).toBe(2);
    } finally {
      await second.stop();
    }
  });
});

describe("rateLimit in the SDK", () => {
  it("refuses a limit below 1 or a period outside 1s-24h, naming the option", () => {
    const define = (rateLimit: { limit: number; period: string }) => () => client.createFunction({ id: "f", triggers: [{ event: "pulse" }], rateLimit }, () => {});
    expect(define({ limit: 0, period: "1m" })).toThrow(/createFunction\("f"\): rateLimit\.limit: /);
    expect(define({ limit: 1, period: "500ms" })).toThrow(/rateLimit\.period: must be between 1s and 24h, got "500ms"/);
  });
});
