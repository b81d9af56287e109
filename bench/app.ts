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

type Waiter = { count: number; resolve: () => void };

/** What the functions report back to the workloads. */
export class Probe {
  /** W1: per run, when each step body ran. */
  readonly stepTimes = new Map<string, number[]>();
  /** W3: how late the step after a 2 s sleep started. */
  readonly lateness: number[] = [];
  /** W4: when the first step of each run started, by the tag in its event. */
  readonly firstStepAt = new Map<string, number>();
  private finished = 0;
  private waiters: Waiter[] = [];

  /** Runs finished so far. */
  get finishedCount(): number {
    return this.finished;
  }

  finish(): void {
    this.finished++;
    this.waiters = this.waiters.filter((w) => (this.finished >= w.count ? (w.resolve(), false) : true));
  }

  /** Resolves once `count` more runs have finished (their last step ran). */
  finishedAfter(count: number): Promise<void> {
    const target = this.finished + count;
    return new Promise((resolve) => {
      if (this.finished >= target) resolve();
      else this.waiters.push({ count: target, resolve });
    });
  }
}

export function createBenchApp(probe: Probe) {
  const client = new Stepwise({
    id: "bench",
    signingKey: SIGNING_KEY,
    logger: { debug() {}, info() {}, warn() {}, error: console.error },
    schemas: {
      "bench/sequence": z.object({ steps: z.number() }),
      "bench/burst": z.object({ n: z.number() }),
      "bench/sleep": z.object({ n: z.number() }),
      "bench/latency": z.object({ tag: z.string() }),
    },
  });
  const sequence = client.createFunction({ id: "sequence", triggers: [{ event: "bench/sequence" }] }, async ({ event, step, runId }) => {
    for (let i = 0; i < event.data.steps; i++) {
      await step.run(`s${i}`, () => {
        const times = probe.stepTimes.get(runId) ?? [];
        times.push(performance.now());
        probe.stepTimes.set(runId, times);
        return i;
      });
    }
    probe.finish();
  });
  const burst = client.createFunction({ id: "burst", triggers: [{ event: "bench/burst" }] }, async ({ step }) => {
    for (let i = 0; i < 5; i++) await step.run(`s${i}`, () => i);
    probe.finish();
  });
  const sleeper = client.createFunction({ id: "sleeper", triggers: [{ event: "bench/sleep" }] }, async ({ step }) => {
    const before = await step.run("before", () => Date.now());
    await step.sleep("two-seconds", 2_000);
    await step.run("after", () => probe.lateness.push(Date.now() - before - 2_000));
    probe.finish();
  });
  const latency = client.createFunction({ id: "latency", triggers: [{ event: "bench/latency" }] }, async ({ event, step }) => {
    await step.run("first", () => probe.firstStepAt.set(event.data.tag, performance.now()));
    probe.finish();
  });
  const app = new Hono();
  app.on(["GET", "POST", "PUT"], "/api/durable", serve({ client, functions: [sequence, burst, sleeper, latency] }));
  return app;
}

export function listen(app: Hono): Promise<{ server: ServerType; url: string }> {
  return new Promise((resolve) => {
    const server = serveNode({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) =>
      resolve({ server, url: `http://127.0.0.1:${info.port}/api/durable` }),
    );
  });
}
