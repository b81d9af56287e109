/**
 * The Node executor's `GET /metrics`: runs started and ended per function and outcome, step
 * durations and inter-step latency counted once per step (checkpointed or not), the queue's
 * depth, and the API key required outside dev mode. Over real HTTP, on every store.
 */
import { NonRetriableError, Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, STORE_KINDS, type Stack } from "../support/stack.ts";

const client = new Stepwise({ id: "metered", dev: true, schemas: { "m/go": z.object({ fail: z.boolean() }), "m/nap": z.object({}) } });
const three = (checkpointing: boolean) =>
  client.createFunction({ id: checkpointing ? "three" : "three-plain", triggers: [{ event: "m/go" }], retries: 0, checkpointing }, async ({ event, step }) => {
    await step.run("a", () => 1);
    await step.run("b", () => 2);
    await step.run("c", () => {
      if (event.data.fail) throw new NonRetriableError("no");
      return 3;
    });
  });
const nap = client.createFunction({ id: "nap", triggers: [{ event: "m/nap" }] }, async ({ step }) => step.sleep("long", "1h"));

/** The value of one series in Prometheus' text format, 0 when it is absent. */
function value(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe.each(STORE_KINDS)("metrics on %s", (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store: kind, client, functions: [three(true), three(false), nap] });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("counts runs by outcome and each step once, checkpointed or not", async () => {
    const ids = await stack.send([{ name: "m/go", data: { fail: false } }, { name: "m/go", data: { fail: true } }]);
    for (const id of ids) {
      await stack.waitForRun(id, { functionId: "metered-three" });
      await stack.waitForRun(id, { functionId: "metered-three-plain" });
    }
    const [napId] = await stack.send({ name: "m/nap", data: {} });
    const napping = await stack.waitForRun(napId!, { status: "sleeping" });
    await fetch(`${stack.executor.url}/api/runs/${napping.id}/cancel`, { method: "POST" });

    const response = await fetch(`${stack.executor.url}/metrics`);
    expect(response.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await response.text();
    for (const fn of ["metered-three", "metered-three-plain"]) {
      expect(value(text, `stepwise_runs_started_total{function="${fn}"}`)).toBe(2);
      expect(value(text, `stepwise_runs_ended_total{function="${fn}",status="completed"}`)).toBe(1);
      expect(value(text, `stepwise_runs_ended_total{function="${fn}",status="failed"}`)).toBe(1);
      // a, b twice and c once completed; c once failed: each counted once.
      expect(value(text, `stepwise_step_duration_seconds_count{function="${fn}",kind="run",status="completed"}`)).toBe(5);
      expect(value(text, `stepwise_step_duration_seconds_count{function="${fn}",kind="run",status="failed"}`)).toBe(1);
      // Every step after the first of its run: b and c of each run.
      expect(value(text, `stepwise_step_gap_seconds_count{function="${fn}"}`)).toBe(4);
    }
    expect(value(text, `stepwise_runs_ended_total{function="metered-nap",status="cancelled"}`)).toBe(1);
    expect(text).toMatch(/^stepwise_queue_due_jobs \d+$/m);
    expect(text).toMatch(/^stepwise_queue_oldest_due_seconds [\d.e-]+$/m);
    expect(text).toMatch(/^stepwise_process_resident_memory_bytes \d+/m);
  });
});

describe("metrics outside dev mode", () => {
  it("need the API key", async () => {
    const keyed = new Stepwise({ id: "metered", dev: false, signingKey: "k" });
    const stack = await startStack({ store: "pglite", client: keyed, functions: [], executor: { dev: false, signingKey: "k", eventKey: "e", apiKey: "api" } });
    try {
      expect((await fetch(`${stack.executor.url}/metrics`)).status).toBe(401);
      const scraped = await fetch(`${stack.executor.url}/metrics`, { headers: { authorization: "Bearer api" } });
      expect(scraped.status).toBe(200);
      expect(await scraped.text()).toContain("# TYPE stepwise_runs_started_total counter");
    } finally {
      await stack.close();
    }
  });
});
