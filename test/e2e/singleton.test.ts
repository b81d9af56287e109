/**
 * `singleton`: one live run per key. In skip mode a run started while another of its key is live
 * is `skipped`, naming the run that holds the key; in cancel mode the live one is cancelled for
 * the new one. Over real HTTP on every store, with a second executor on the same store.
 */
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startTwoExecutors, type TwoExecutorStack } from "../support/stack.ts";

const client = new Stepwise({ id: "single", dev: true, schemas: { "sync/requested": z.object({ user: z.string() }), "build/requested": z.object({ branch: z.string() }) } });
const sync = client.createFunction({ id: "sync", triggers: [{ event: "sync/requested" }], singleton: { key: "event.data.user", mode: "skip" } }, async ({ step }) => {
  await step.sleep("slow", "600ms");
  return step.run("done", () => "synced");
});
const build = client.createFunction({ id: "build", triggers: [{ event: "build/requested" }], singleton: { key: "event.data.branch", mode: "cancel" } }, async ({ step }) => {
  await step.sleep("compile", "600ms");
  return step.run("done", () => "built");
});

describe.each(STORE_KINDS)("singleton on %s", (store) => {
  let stack: TwoExecutorStack;
  beforeAll(async () => {
    stack = await startTwoExecutors({ store, client, functions: [sync, build] });
  });
  afterAll(async () => stack?.close());

  it("skips a run while another of its key is live, saying which; starts one once it ended", async () => {
    const user = `u-${store}`;
    const [first] = await stack.send({ name: "sync/requested", data: { user } });
    const [second] = await stack.send({ name: "sync/requested", data: { user } });
    const [other] = await stack.send({ name: "sync/requested", data: { user: `${user}-b` } });
    const [a, b, c] = [await stack.waitForRun(first!), await stack.waitForRun(second!), await stack.waitForRun(other!)];
    expect([a.status, b.status, c.status]).toEqual(["completed", "skipped", "completed"]);
    expect(b.error).toEqual({ name: "RunSkipped", message: `singleton: run ${a.id} for event.data.user = "${user}" is still running` });
    const [later] = await stack.send({ name: "sync/requested", data: { user } });
    expect((await stack.waitForRun(later!)).status).toBe("completed");
  });

  it("starts one run of a key between two executors given its events at the same moment", async () => {
    const user = `both-${store}`;
    const events = Array.from({ length: 4 }, () => ({ name: "sync/requested", data: { user } }));
    const sent = await Promise.all([stack.send(events.slice(0, 2)), stack.second.sendEvents(events.slice(2)).then((result) => result.ids)]);
    const runs = await Promise.all(sent.flat().map((id) => stack.waitForRun(id)));
    expect(runs.map((run) => run.status).sort()).toEqual(["completed", "skipped", "skipped", "skipped"]);
    const holder = runs.find((run) => run.status === "completed")!;
    for (const run of runs.filter((r) => r.status === "skipped")) expect(run.error?.message).toBe(`singleton: run ${holder.id} for event.data.user = "${user}" is still running`);
  });

  it("in cancel mode, cancels the live run of the key for the new one", async () => {
    const branch = `main-${store}`;
    const [first] = await stack.send({ name: "build/requested", data: { branch } });
    await stack.waitForRun(first!, { status: "sleeping" });
    const [second] = await stack.send({ name: "build/requested", data: { branch } });
    const [a, b] = [await stack.waitForRun(first!), await stack.waitForRun(second!)];
    expect(a.status).toBe("cancelled");
    expect(a.error?.message).toBe(`singleton: replaced by run ${b.id}`);
    expect(b).toMatchObject({ status: "completed", output: "built" });
  });
});

describe("singleton in the SDK", () => {
  it("refuses an unknown mode, naming the option", () => {
    expect(() => client.createFunction({ id: "f", triggers: [{ event: "sync/requested" }], singleton: { mode: "queue" as "skip" } }, () => {})).toThrow(/createFunction\("f"\): singleton\.mode: /);
  });
});
