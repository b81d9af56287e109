/**
 * What the executor keeps: finished runs, their steps and events go after the retention age
 * (pruned in bounded batches), and a run keeps only the jobs its state needs: none once it
 * ended, no timeout once its wait resolved.
 */
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const client = new Stepwise({ id: "keep", dev: true, schemas: { "keep/quick": z.object({}), "keep/wait": z.object({ id: z.string() }), "keep/go": z.object({ id: z.string() }) } });
const quick = client.createFunction({ id: "quick", triggers: [{ event: "keep/quick" }] }, async ({ step }) => step.run("only", () => "done"));
const waiter = client.createFunction({ id: "waiter", triggers: [{ event: "keep/wait" }] }, async ({ step }) => {
  await step.waitForEvent("go", { event: "keep/go", match: "data.id", timeout: "1h" });
  await step.sleep("long", "1h");
});

describe.each(STORE_KINDS)("retention and jobs on %s", (store) => {
  let stack: Stack;
  /** The record's jobs of a run: the store's own client, as an operator would look. */
  const jobsOf = async (runId: string) => {
    const sql = (stack.store as unknown as { client: { query(text: string, params: unknown[]): Promise<Array<{ kind: string }>> } }).client;
    return (await sql.query("SELECT kind FROM jobs WHERE run_id = $1 ORDER BY kind", [runId])).map((row) => row.kind);
  };
  beforeAll(async () => {
    stack = await startStack({ store, client, functions: [quick, waiter], executor: { retentionMs: 300, maintenanceMs: 200 } });
  });
  afterAll(async () => stack?.close());

  it("prunes a finished run, its steps and its event once they are older than the retention age", async () => {
    const [id] = await stack.send({ name: "keep/quick", data: {} });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("completed");
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && (await stack.runsOf(id!)).length > 0) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await stack.runsOf(id!)).toEqual([]);
    expect((await fetch(`${stack.executor.url}/api/runs/${run.id}`)).status).toBe(404);
    expect(await stack.store.getEvent(id!)).toBeNull();
    expect(stack.log.lines.some((line) => /pruned \d+ finished run\(s\)/.test(line))).toBe(true);
  });

  it("a resolved wait leaves no timeout job behind, and a cancelled run no job at all", async () => {
    const [id] = await stack.send({ name: "keep/wait", data: { id: store } });
    const waiting = await stack.waitForRun(id!, { status: "waiting" });
    expect(await jobsOf(waiting.id)).toEqual(["wait-timeout"]);
    await stack.send({ name: "keep/go", data: { id: store } });
    await stack.waitForRun(id!, { status: "sleeping" });
    expect(await jobsOf(waiting.id)).toEqual(["wake"]);
    await fetch(`${stack.executor.url}/api/runs/${waiting.id}/cancel`, { method: "POST" });
    expect(await jobsOf(waiting.id)).toEqual([]);
  });
});
