/**
 * The executor as a Cloudflare Worker, end to end: `wrangler dev` (local, workerd) runs
 * apps/worker from the top-level wrangler.toml against a fresh PostgreSQL database (the Neon
 * driver through the ws-tcp bridge) and Redis (@upstash/redis through the Upstash bridge); an
 * app on Node registers with it, and a run goes through a step, a 2 s sleep (woken by the
 * Scheduler's alarm, since no process stays up) and a wait for an event.
 *
 * Skips (with a note) only when wrangler cannot start and CI is not true.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve as serveNode, type ServerType } from "@hono/node-server";
import type { RunView } from "@stepwise/engine";
import { Stepwise } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/hono";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createTestDatabase, postgresAvailable, testBridge, type TestDatabase } from "../support/postgres.ts";
import { redisAvailable, startTestRedis, type TestRedis } from "../support/redis.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
const START_TIMEOUT_MS = 60_000;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

interface RunningWorker {
  url: string;
  output: string[];
  stop(): Promise<void>;
}

/** Starts `wrangler dev`; resolves once /health answers, or rejects with wrangler's output. */
async function startWorker(vars: Record<string, string>): Promise<RunningWorker> {
  const [port, inspectorPort] = [await freePort(), await freePort()];
  const persist = mkdtempSync(join(tmpdir(), "stepwise-wrangler-"));
  const args = [WRANGLER, "dev", "--config", join(ROOT, "wrangler.toml"), "--ip", "127.0.0.1", "--port", String(port)];
  args.push("--inspector-port", String(inspectorPort), "--persist-to", persist, "--show-interactive-dev-session=false");
  // Exposes /__scheduled, to run the cron handler (wrangler dev never fires crons by itself).
  args.push("--test-scheduled");
  for (const [name, value] of Object.entries(vars)) args.push("--var", `${name}:${value}`);
  // Its own process group, so stopping it also stops workerd.
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: process.env.CI ?? "" },
  });
  const output: string[] = [];
  child.stdout?.on("data", (chunk: Buffer) => output.push(...chunk.toString().split("\n").filter(Boolean)));
  child.stderr?.on("data", (chunk: Buffer) => output.push(...chunk.toString().split("\n").filter(Boolean)));
  let exited = false;
  child.once("exit", () => (exited = true));
  const stop = async () => {
    if (!exited && child.pid) {
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        // Already gone.
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    rmSync(persist, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline && !exited) {
    const ok = await fetch(`${url}/health`).then((r) => r.ok, () => false);
    if (ok) return { url, output, stop };
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  await stop();
  throw new Error(`wrangler dev did not start (${exited ? "it exited" : "timed out"}):\n${output.slice(-40).join("\n")}`);
}

const schemas = {
  "worker/order": z.object({ orderId: z.string() }),
  "worker/paid": z.object({ orderId: z.string(), amount: z.number() }),
};

/** The queue in Postgres (a Postgres-only deploy), or in Redis through @upstash/redis. */
const TOPOLOGIES = [
  ...(postgresAvailable ? (["postgres"] as const) : []),
  ...(postgresAvailable && redisAvailable ? (["postgres+redis"] as const) : []),
];

describe.skipIf(TOPOLOGIES.length === 0).each(TOPOLOGIES)("the executor as a Worker (wrangler dev) on %s", (topology) => {
  let worker: RunningWorker | undefined;
  let startError: unknown;
  let db: TestDatabase | undefined;
  let redis: TestRedis | undefined;
  let appServer: ServerType | undefined;

  beforeAll(async () => {
    db = await createTestDatabase("worker");
    const bridge = await testBridge();
    const vars: Record<string, string> = {
      STEPWISE_DEV: "1",
      DATABASE_URL: db.connectionString,
      // The bridge's authority, in the form the Neon driver's wsProxy takes.
      STEPWISE_WS_PROXY: `${new URL(bridge.url).host}/v2`,
    };
    if (topology === "postgres+redis") {
      redis = await startTestRedis("worker");
      Object.assign(vars, { UPSTASH_REDIS_REST_URL: redis.url, UPSTASH_REDIS_REST_TOKEN: redis.token, STEPWISE_REDIS_PREFIX: redis.prefix });
    }
    try {
      worker = await startWorker(vars);
    } catch (error) {
      if (process.env.CI === "true") throw error;
      startError = error;
      console.warn(`skipping the Worker suite: ${error instanceof Error ? error.message : String(error)}`);
    }
  }, START_TIMEOUT_MS + 30_000);

  afterAll(async () => {
    if (appServer) await new Promise<void>((resolve) => appServer!.close(() => resolve()));
    await worker?.stop();
    await db?.drop();
    await redis?.close();
  });

  it("runs a step, a 2 s sleep and a wait for an event", async (context) => {
    if (!worker) return context.skip(`wrangler dev could not start: ${String(startError)}`);
    const client = new Stepwise({ id: "worker-e2e", dev: true, baseUrl: worker.url, schemas });
    const order = client.createFunction({ id: "order", triggers: [{ event: "worker/order" }] }, async ({ event, step }) => {
      const reserved = await step.run("reserve", () => `res-${event.data.orderId}`);
      const sleptFrom = await step.run("before-sleep", () => Date.now());
      await step.sleep("nap", "2s");
      const woke = await step.run("after-sleep", () => Date.now());
      const paid = await step.waitForEvent("payment", { event: "worker/paid", match: "data.orderId", timeout: "1m" });
      return { reserved, slept: woke - sleptFrom, amount: paid?.data.amount ?? null };
    });
    const app = new Hono();
    app.on(["GET", "POST", "PUT"], "/api/durable", serve({ client, functions: [order] }));
    const appUrl = await new Promise<string>((resolve) => {
      appServer = serveNode({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) => resolve(`http://127.0.0.1:${info.port}/api/durable`));
    });
    const put = await fetch(appUrl, { method: "PUT" });
    expect(put.status, await put.clone().text()).toBe(200);

    const [eventId] = (await client.send({ name: "worker/order", data: { orderId: "o-7" } })).ids;
    const logs = () => worker!.output.slice(-30).join("\n");
    const waiting = await waitFor(worker.url, eventId!, (run) => run.steps.some((s) => s.id === "payment" && s.status === "waiting"), 20_000, logs);
    expect(waiting.steps.find((s) => s.id === "reserve")).toMatchObject({ status: "completed", output: "res-o-7" });
    await client.send({ name: "worker/paid", data: { orderId: "o-7", amount: 42 } });
    const done = await waitFor(worker.url, eventId!, (run) => run.status === "completed", 20_000, logs);
    const output = done.output as { reserved: string; slept: number; amount: number | null };
    expect(output.reserved).toBe("res-o-7");
    expect(output.amount).toBe(42);
    expect(output.slept).toBeGreaterThanOrEqual(2_000);
    // Woken by the scheduler's alarm, not by the cron a minute later (which wrangler dev never fires).
    expect(output.slept).toBeLessThan(10_000);

    // The cron safety net (reconcile, sweep, drain, re-arm) runs cleanly in workerd too.
    const cron = await fetch(`${worker.url}/__scheduled?cron=*+*+*+*+*`);
    expect(cron.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(await cron.text()).toContain("Ran scheduled event");
    expect(worker.output.filter((line) => /cron drain failed|ERROR/.test(line))).toEqual([]);
  }, 60_000);
});

async function waitFor(base: string, eventId: string, done: (run: RunView) => boolean, timeoutMs: number, logs: () => string): Promise<RunView> {
  const deadline = Date.now() + timeoutMs;
  let last: RunView | undefined;
  while (Date.now() < deadline) {
    const response = await fetch(`${base}/api/events/${eventId}/runs`);
    if (response.ok) {
      last = ((await response.json()) as { runs: RunView[] }).runs[0];
      if (last && done(last)) return last;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`run of event ${eventId} not as expected after ${timeoutMs} ms; last: ${JSON.stringify(last)}\n${logs()}`);
}
