/**
 * Clocks disagree: an executor whose clock runs 5 s ahead of the database's still idles while
 * nothing is due (it asks the database how long until the next job, instead of comparing the
 * database's due time with its own clock), and a sleep still ends on the database's time.
 */
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const client = new Stepwise({ id: "clock", dev: true, schemas: { "clock/nap": z.object({}) } });
const nap = client.createFunction({ id: "nap", triggers: [{ event: "clock/nap" }] }, async ({ step }) => {
  const before = await step.run("before", () => Date.now());
  await step.sleep("nap", "3s");
  return { before, after: await step.run("after", () => Date.now()) };
});

describe.each(STORE_KINDS)("an executor clock 5 s ahead, on %s", (store) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store, client, functions: [nap] });
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    await stack?.close();
  });

  it("claims at its poll rate while a sleep is pending, not in a loop, and the sleep ends on time", async () => {
    const [id] = await stack.send({ name: "clock/nap", data: {} });
    await stack.waitForRun(id!, { status: "sleeping" });
    let claims = 0;
    const queue = stack.store.queue;
    const claim = queue.claim.bind(queue);
    queue.claim = async (...args) => {
      claims++;
      return claim(...args);
    };
    const realNow = Date.now.bind(Date);
    vi.spyOn(Date, "now").mockImplementation(() => realNow() + 5_000);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    vi.restoreAllMocks();
    // The stack polls every 200 ms: about 8 claims in 1.5 s. A loop makes thousands.
    expect(claims).toBeLessThan(30);
    const run = await stack.waitForRun(id!);
    const { before, after } = run.output as { before: number; after: number };
    expect(after - before).toBeGreaterThanOrEqual(3_000);
  });
});
