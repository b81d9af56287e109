/**
 * The benchmark's app: functions that record, in this process, when their step bodies run,
 * so the workloads measure what a user would see (a step starting), not what the API reports.
 */
import { serve as serveNode, type ServerType } from "@hono/node-server";
import { Stepwise } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/hono";
import { Hono } from "hono";
import { z } from "zod";

export const SIGNING_KEY = "bench-signing-key";

/** What the functions report: sent to the orchestrator process as it happens. */
export type ProbeMessage =
  | { type: "step"; runId: string; at: number }
  | { type: "late"; ms: number }
  | { type: "first"; tag: string; at: number }
  | { type: "finish" }
  | { type: "ready"; url: string };

/** Absolute time in ms with sub-ms precision, comparable across processes on one machine. */
export const now = () => performance.timeOrigin + performance.now();

/** The app's side: forwards what the functions see. */
export class Probe {
  constructor(readonly report: (message: ProbeMessage) => void) {}
}

export function createBenchApp(probe: Probe) {
  const client = new Stepwise({
    id: "bench",
    signingKey: SIGNING_KEY,
    logger: { debug() {}, info() {}, warn() {}, error: console.error },
    schemas: {
      "bench/sequence": z.object({ steps: z.number() }),
      "bench/sequence-plain": z.object({ steps: z.number() }),
      "bench/burst": z.object({ n: z.number() }),
      "bench/sleep": z.object({ n: z.number() }),
      "bench/latency": z.object({ tag: z.string() }),
    },
  });
  const steps = async ({ event, step, runId }: { event: { data: { steps: number } }; step: { run: <T>(name: string, fn: () => T) => Promise<unknown> }; runId: string }) => {
    for (let i = 0; i < event.data.steps; i++) {
      await step.run(`s${i}`, () => {
        probe.report({ type: "step", runId, at: now() });
        return i;
      });
    }
    probe.report({ type: "finish" });
  };
  // The default: checkpointed. The same chain with one invocation per step, for comparison.
  const sequence = client.createFunction({ id: "sequence", triggers: [{ event: "bench/sequence" }] }, steps);
  const sequencePlain = client.createFunction({ id: "sequence-plain", triggers: [{ event: "bench/sequence-plain" }], checkpointing: false }, steps);
  const burst = client.createFunction({ id: "burst", triggers: [{ event: "bench/burst" }] }, async ({ step }) => {
    for (let i = 0; i < 5; i++) await step.run(`s${i}`, () => i);
    probe.report({ type: "finish" });
  });
  // The same runs with a concurrency key of 50 values (see W2 keyed): 10 at once per tenant, so
  // W2's 4 runs per tenant never wait for a slot and a burst's 20 do.
  const burstKeyed = client.createFunction(
    { id: "burst-keyed", triggers: [{ event: "bench/burst-keyed" }], concurrency: { limit: 10, key: "event.data.tenant" } },
    async ({ step }) => {
      for (let i = 0; i < 5; i++) await step.run(`s${i}`, () => i);
      probe.report({ type: "finish" });
    },
  );
  // Throttled to 50 starts a second, one at a time (see the throttle workload).
  const throttled = client.createFunction(
    { id: "throttled", triggers: [{ event: "bench/throttled" }], throttle: { limit: 50, period: "1s" } },
    async ({ event, step }) => {
      await step.run("first", () => probe.report({ type: "first", tag: (event.data as { tag: string }).tag, at: now() }));
      probe.report({ type: "finish" });
    },
  );
  const sleeper = client.createFunction({ id: "sleeper", triggers: [{ event: "bench/sleep" }] }, async ({ step }) => {
    const before = await step.run("before", () => Date.now());
    await step.sleep("two-seconds", 2_000);
    await step.run("after", () => probe.report({ type: "late", ms: Date.now() - before - 2_000 }));
    probe.report({ type: "finish" });
  });
  const latency = client.createFunction({ id: "latency", triggers: [{ event: "bench/latency" }] }, async ({ event, step }) => {
    await step.run("first", () => probe.report({ type: "first", tag: event.data.tag, at: now() }));
    probe.report({ type: "finish" });
  });
  const app = new Hono();
  app.on(["GET", "POST", "PUT"], "/api/durable", serve({ client, functions: [sequence, sequencePlain, burst, burstKeyed, throttled, sleeper, latency] }));
  return app;
}

export function listen(app: Hono): Promise<{ server: ServerType; url: string }> {
  return new Promise((resolve) => {
    const server = serveNode({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) =>
      resolve({ server, url: `http://127.0.0.1:${info.port}/api/durable` }),
    );
  });
}
