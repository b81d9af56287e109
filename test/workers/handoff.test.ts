/**
 * Handing a deployment over from the Node executor to the Worker executor: both use the same
 * stores (a fresh PostgreSQL database through the ws-tcp bridge as the record, the queue in Redis
 * through the Upstash bridge, under one key prefix). A run starts on the Node executor
 * (startServer), runs its first step and goes to sleep for 2 s; the Node executor is closed,
 * the executor Worker starts under `wrangler dev` on the same database and prefix, a request to
 * its API drains the overdue sleep (nothing armed its scheduler: the Node executor queued the
 * wake-up), and the event the run then waits for, sent through the Worker's API, completes it.
 * The app stays on Node (Hono) throughout.
 *
 * Skips (with a note) only when wrangler cannot start and CI is not true.
 */
import { serve as serveNode, type ServerType } from "@hono/node-server";
import { silentLogger } from "@stepwise/engine";
import { RedisQueue } from "@stepwise/queue-redis";
import { Stepwise } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/hono";
import { startServer, type RunningServer } from "@stepwise/server";
import { PostgresStore } from "@stepwise/store-postgres";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createTestDatabase, postgresAvailable, testBridge, type TestDatabase } from "../support/postgres.ts";
import { redisAvailable, startTestRedis, type TestRedis } from "../support/redis.ts";
import { EXECUTOR_CONFIG, startWorker, waitFor, type RunningWorker } from "../support/wrangler.ts";

/** Shared by both executors and the app. */
const SIGNING_KEY = `signkey-handoff-${"0123456789abcdef".repeat(4)}`;
const EVENT_KEY = "event-key-handoff";
const API_KEY = "api-key-worker-e2e";

const schemas = {
  "handoff/order": z.object({ orderId: z.string() }),
  "handoff/paid": z.object({ orderId: z.string(), amount: z.number() }),
  "handoff/ping": z.object({}),
};

describe.skipIf(!postgresAvailable || !redisAvailable)("a run handed over from the Node executor to the Worker executor", () => {
  let db: TestDatabase | undefined;
  let redis: TestRedis | undefined;
  let node: RunningServer | undefined;
  let worker: RunningWorker | undefined;
  let appServer: ServerType | undefined;

  beforeAll(async () => {
    db = await createTestDatabase("handoff");
    redis = await startTestRedis("handoff");
  });

  afterAll(async () => {
    if (appServer) await new Promise<void>((resolve) => appServer!.close(() => resolve()));
    await node?.close();
    await worker?.stop();
    await db?.drop();
    await redis?.close();
  });

  it("A run started on the Node executor and continued by the Worker executor (same stores) completes", async (context) => {
    const { url: bridgeUrl } = await testBridge();
    // The Node executor: PostgresStore over the Neon driver (the test bridge), the queue in Redis.
    const readyQueue = new RedisQueue({ url: redis!.url, token: redis!.token, prefix: redis!.prefix });
    const store = new PostgresStore(db!.client(), { readyQueue });
    node = await startServer({ store, dev: false, port: 0, signingKey: SIGNING_KEY, eventKey: EVENT_KEY, apiKey: API_KEY, log: silentLogger, pollMs: 200, allowPrivateAppUrls: true });

    // The app, on Node throughout; it registers with the Node executor (the registration is in the record).
    const client = new Stepwise({ id: "handoff-e2e", baseUrl: node.url, signingKey: SIGNING_KEY, eventKey: EVENT_KEY, schemas });
    const order = client.createFunction({ id: "order", triggers: [{ event: "handoff/order" }] }, async ({ event, step }) => {
      const reserved = await step.run("reserve", () => ({ id: `res-${event.data.orderId}`, at: Date.now() }));
      await step.sleep("nap", "2s");
      const woke = await step.run("after-sleep", () => Date.now());
      const paid = await step.waitForEvent("payment", { event: "handoff/paid", match: "data.orderId", timeout: "1m" });
      return { reserved, woke, amount: paid?.data.amount ?? null };
    });
    const app = new Hono();
    const appUrl = await new Promise<string>((resolve) => {
      appServer = serveNode({ fetch: (request) => app.fetch(request), port: 0, hostname: "127.0.0.1" }, (info) => resolve(`http://127.0.0.1:${info.port}/api/durable`));
    });
    // Outside dev mode the app registers the URL it is configured with.
    app.on(["GET", "POST", "PUT"], "/api/durable", serve({ client, functions: [order], serveUrl: appUrl }));
    const put = await fetch(appUrl, { method: "PUT" });
    expect(put.status, await put.clone().text()).toBe(200);

    // Phase 1, on Node: the first step runs and the run goes to sleep.
    const [eventId] = (await client.send({ name: "handoff/order", data: { orderId: "o-9" } })).ids;
    const sleeping = await waitFor(node.url, eventId!, (run) => run.steps.some((s) => s.id === "nap" && s.status !== "completed"), 15_000, () => "", API_KEY);
    expect(sleeping.status).not.toBe("completed");
    expect(sleeping.steps.find((s) => s.id === "reserve")).toMatchObject({ status: "completed" });
    await node.close();
    node = undefined;
    const switchedAt = Date.now();

    // Phase 2, on the Worker: same database, same Redis prefix.
    try {
      worker = await startWorker(EXECUTOR_CONFIG, {
        STEPWISE_DEV: "0",
        STEPWISE_SIGNING_KEY: SIGNING_KEY,
        STEPWISE_EVENT_KEY: EVENT_KEY,
        STEPWISE_API_KEY: API_KEY,
        DATABASE_URL: db!.connectionString,
        STEPWISE_WS_PROXY: `${new URL(bridgeUrl).host}/v2`,
        UPSTASH_REDIS_REST_URL: redis!.url,
        UPSTASH_REDIS_REST_TOKEN: redis!.token,
        STEPWISE_REDIS_PREFIX: redis!.prefix,
      });
    } catch (error) {
      if (process.env.CI === "true") throw error;
      console.warn(`skipping the handoff test: ${error instanceof Error ? error.message : String(error)}`);
      return context.skip(`wrangler dev could not start: ${String(error)}`);
    }
    const logs = () => worker!.output.slice(-30).join("\n");
    const workerClient = new Stepwise({ id: "handoff-e2e", baseUrl: worker.url, eventKey: EVENT_KEY, schemas });
    // The sleep is overdue by now, and only in the queue: the Node executor scheduled it, so no
    // alarm of the Worker's is armed. A request that may queue work (any event) makes it drain.
    const napDueAt = Date.parse(sleeping.steps.find((s) => s.id === "nap")!.startedAt) + 2_000;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, napDueAt + 100 - Date.now())));
    await workerClient.send({ name: "handoff/ping", data: {} });
    await waitFor(worker.url, eventId!, (run) => run.steps.some((s) => s.id === "payment" && s.status === "waiting"), 20_000, logs, API_KEY);
    // The awaited event, through the Worker's API (whose drain then finishes the run).
    await workerClient.send({ name: "handoff/paid", data: { orderId: "o-9", amount: 42 } });
    const done = await waitFor(worker.url, eventId!, (run) => run.status === "completed", 20_000, logs, API_KEY);

    const output = done.output as { reserved: { id: string; at: number }; woke: number; amount: number | null };
    expect(output.reserved.id).toBe("res-o-9");
    // The first step ran on the Node executor, before the switch; the rest after it, on the Worker.
    expect(output.reserved.at).toBeLessThan(switchedAt);
    expect(output.woke).toBeGreaterThanOrEqual(switchedAt);
    expect(output.amount).toBe(42);
    expect(Date.parse(done.endedAt!)).toBeGreaterThanOrEqual(switchedAt);
    expect(done.steps.find((s) => s.id === "reserve")?.endedAt).toBeDefined();
    expect(Date.parse(done.steps.find((s) => s.id === "reserve")!.endedAt!)).toBeLessThan(switchedAt);
    console.log(
      `handoff: reserve at ${switchedAt - output.reserved.at} ms before the switch; woke ${output.woke - switchedAt} ms and completed ${Date.parse(done.endedAt!) - switchedAt} ms after it`,
    );
    expect(worker.output.filter((line) => /drain .* failed|ERROR/.test(line))).toEqual([]);
  }, 60_000);
});
