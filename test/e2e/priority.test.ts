/**
 * `priority.run`: a run with a higher priority waiting for a lane goes first; a negative one
 * waits that long. One lane, held by another run while the events arrive, over real HTTP on
 * every store.
 */
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

/** The order in which runs' steps ran, by name, and when. */
const order: Array<{ name: string; at: number }> = [];

const client = new Stepwise({
  id: "prio",
  dev: true,
  schemas: { "job/ranked": z.object({ name: z.string(), plan: z.string() }), "job/hog": z.object({}) },
});
let hogStarted: () => void = () => {};
const hog = client.createFunction({ id: "hog", triggers: [{ event: "job/hog" }] }, async ({ step }) =>
  step.run("hold", () => {
    hogStarted();
    return new Promise((resolve) => setTimeout(() => resolve("held"), 600));
  }),
);
const ranked = client.createFunction(
  { id: "ranked", triggers: [{ event: "job/ranked" }], priority: { run: "event.data.plan == 'pro' ? 120 : (event.data.plan == 'trial' ? -1 : 0)" } },
  async ({ event, step }) => step.run("work", () => void order.push({ name: event.data.name, at: Date.now() })),
);

describe.each(STORE_KINDS)("priority on %s", (store) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store, client, functions: [hog, ranked], executor: { concurrency: 1 } });
  });
  afterAll(async () => stack?.close());

  it("runs a higher priority first among runs waiting for a lane, and a negative one later", async () => {
    order.length = 0;
    const holding = new Promise<void>((resolve) => (hogStarted = resolve));
    await stack.send({ name: "job/hog", data: {} });
    await holding;
    const sentAt = Date.now();
    const ids = await stack.send([
      { name: "job/ranked", data: { name: "trial", plan: "trial" } },
      { name: "job/ranked", data: { name: "free-1", plan: "free" } },
      { name: "job/ranked", data: { name: "free-2", plan: "free" } },
      { name: "job/ranked", data: { name: "pro", plan: "pro" } },
    ]);
    await Promise.all(ids.map((id) => stack.waitForRun(id)));
    expect(order.map((entry) => entry.name)).toEqual(["pro", "free-1", "free-2", "trial"]);
    expect(order.find((entry) => entry.name === "trial")!.at - sentAt).toBeGreaterThanOrEqual(1_000);
  });
});

describe("priority in the SDK", () => {
  it("refuses an expression that does not parse, naming the option", () => {
    expect(() => client.createFunction({ id: "f", triggers: [{ event: "job/hog" }], priority: { run: "event.data.(" } }, () => {})).toThrow(
      /createFunction\("f"\): priority\.run: "event\.data\.\(" is not a valid CEL expression/,
    );
  });
});
