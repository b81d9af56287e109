/**
 * The executor and an app, both as Cloudflare Workers, end to end: `wrangler dev` (local,
 * workerd) runs apps/worker from the top-level wrangler.toml against a fresh PostgreSQL database
 * (the Neon driver through the ws-tcp bridge) and Redis (@upstash/redis through the Upstash
 * bridge); a second `wrangler dev` runs the app Worker of test/workers/app (@stepwise/sdk/fetch),
 * which registers with the executor at STEPWISE_BASE_URL. Both share a signing key (no dev mode),
 * and a run goes through steps (one of 1.5 MB, which later invocations leave out and the app reads back), a 2 s sleep (woken by the Scheduler's alarm, since no process
 * stays up) and a wait for an event, its steps checkpointed from one Worker to the other. The sleep's lateness is measured and printed.
 *
 * Skips (with a note) only when wrangler cannot start and CI is not true.
 */
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { SignalNotDeliveredError, Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cronEventId } from "@stepwise/engine";
import { nextCronTick } from "@stepwise/protocol";
import { HEARTBEAT_CRON } from "./app/src/heartbeat.ts";
import { schemas } from "./app/src/index.ts";
import { createTestDatabase, postgresAvailable, testBridge, type TestDatabase } from "../support/postgres.ts";
import { redisAvailable, startTestRedis, type TestRedis } from "../support/redis.ts";
import { freePort } from "../support/net.ts";
import { EXECUTOR_CONFIG, START_TIMEOUT_MS, startWorker, timeline, waitFor, type RunningWorker } from "../support/wrangler.ts";

/** The test app Worker's config. */
const APP_CONFIG = new URL("./app/wrangler.toml", import.meta.url).pathname;
/** Shared by both Workers: the executor signs its calls with it, the app verifies them and signs its registration. */
const SIGNING_KEY = `signkey-test-${"0123456789abcdef".repeat(4)}`;
const EVENT_KEY = "event-key-worker-e2e";
const API_KEY = "api-key-worker-e2e";
const DASHBOARD_KEY = "dashboard-key-worker-e2e";
/** How late the 2 s sleep may wake: generous, for a loaded 2-core machine (the cron would be ~60 s). */
const LATENESS_BOUND_MS = 10_000;

/** The queue in Postgres (a Postgres-only deploy), or in Redis through @upstash/redis. */
const TOPOLOGIES = [
  ...(postgresAvailable ? (["postgres"] as const) : []),
  ...(postgresAvailable && redisAvailable ? (["postgres+redis"] as const) : []),
];

describe.skipIf(TOPOLOGIES.length === 0).each(TOPOLOGIES)("the executor and an app as Workers (wrangler dev) on %s", (topology) => {
  let worker: RunningWorker | undefined;
  let app: RunningWorker | undefined;
  let startError: unknown;
  let db: TestDatabase | undefined;
  let redis: TestRedis | undefined;

  beforeAll(async () => {
    db = await createTestDatabase("worker");
    const bridge = await testBridge();
    const vars: Record<string, string> = {
      STEPWISE_DEV: "0",
      STEPWISE_SIGNING_KEY: SIGNING_KEY,
      STEPWISE_EVENT_KEY: EVENT_KEY,
      STEPWISE_API_KEY: API_KEY,
      STEPWISE_DASHBOARD_KEY: DASHBOARD_KEY,
      DATABASE_URL: db.connectionString,
      // The bridge's authority, in the form the Neon driver's wsProxy takes.
      STEPWISE_WS_PROXY: `${new URL(bridge.url).host}/v2`,
      // The app Worker listens on loopback, as here; the operator allows that.
      STEPWISE_ALLOW_PRIVATE_APP_URLS: "1",
    };
    if (topology === "postgres+redis") {
      redis = await startTestRedis("worker");
      Object.assign(vars, { UPSTASH_REDIS_REST_URL: redis.url, UPSTASH_REDIS_REST_TOKEN: redis.token, STEPWISE_REDIS_PREFIX: redis.prefix });
    }
    // The executor's port is chosen first, so both Workers start at once.
    const executorPort = await freePort();
    const appPort = await freePort();
    // Callback URLs point at the executor Worker.
    vars.STEPWISE_PUBLIC_URL = `http://127.0.0.1:${executorPort}`;
    const appVars = {
      STEPWISE_DEV: "0",
      STEPWISE_SIGNING_KEY: SIGNING_KEY,
      STEPWISE_BASE_URL: `http://127.0.0.1:${executorPort}`,
      STEPWISE_SERVE_URL: `http://127.0.0.1:${appPort}/api/durable`,
    };
    const started = await Promise.allSettled([startWorker(EXECUTOR_CONFIG, vars, executorPort), startWorker(APP_CONFIG, appVars, appPort)]);
    if (started[0].status === "fulfilled") worker = started[0].value;
    if (started[1].status === "fulfilled") app = started[1].value;
    const failed = started.find((result): result is PromiseRejectedResult => result.status === "rejected");
    if (failed) {
      await worker?.stop();
      await app?.stop();
      worker = app = undefined;
      if (process.env.CI === "true") throw failed.reason;
      startError = failed.reason;
      console.warn(`skipping the Worker suite: ${failed.reason instanceof Error ? failed.reason.message : String(failed.reason)}`);
    }
  }, START_TIMEOUT_MS + 30_000);

  afterAll(async () => {
    await app?.stop();
    await worker?.stop();
    await db?.drop();
    await redis?.close();
  });

  it("serves the dashboard behind its sign-in, its assets from the bundle", async (context) => {
    if (!worker) return context.skip(`wrangler dev could not start: ${String(startError)}`);
    const page = await fetch(`${worker.url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<script type="module" src="/dashboard/app.js');
    expect((await fetch(`${worker.url}/dashboard/app.js`)).headers.get("content-type")).toMatch(/javascript/);
    expect((await fetch(`${worker.url}/dashboard/session`)).status).toBe(401);
    const wrong = await fetch(`${worker.url}/dashboard/sign-in`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key: "nope" }) });
    expect(wrong.status).toBe(401);
    const signedIn = await fetch(`${worker.url}/dashboard/sign-in`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key: DASHBOARD_KEY }) });
    expect(signedIn.status).toBe(200);
    const { csrf } = (await signedIn.json()) as { csrf: string };
    const cookie = signedIn.headers.get("set-cookie")!.split(";")[0]!;
    expect((await fetch(`${worker.url}/api/runs`, { headers: { cookie } })).status).toBe(200);
    expect((await fetch(`${worker.url}/api/runs/cancel?status=sleeping`, { method: "POST", headers: { cookie } })).status).toBe(403);
    expect((await fetch(`${worker.url}/api/runs/cancel?status=sleeping`, { method: "POST", headers: { cookie, "x-stepwise-csrf": csrf } })).status).toBe(200);
  });

  it("runs a step, a 2 s sleep, a wait for an event, one that looks back, a wait for a signal, a callback URL and a request the executor makes, with the sleep woken in bounded lateness", async (context) => {
    if (!worker || !app) return context.skip(`wrangler dev could not start: ${String(startError)}`);
    // The test sends events as a user would: with the event key, to the executor Worker.
    const client = new Stepwise({ id: "worker-app-e2e", baseUrl: worker.url, eventKey: EVENT_KEY, schemas });
    // The app Worker registers itself with the executor (signed with the shared key).
    const put = await fetch(`${app.url}/api/durable`, { method: "PUT" });
    expect(put.status, `${await put.clone().text()}\n${app.output.slice(-20).join("\n")}`).toBe(200);

    // The other side of the run's step.fetch: says which key it was called with.
    const lookup = createServer((req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ auth: req.headers.authorization ?? null })));
    await new Promise<void>((resolve) => lookup.listen(0, "127.0.0.1", resolve));
    context.onTestFinished(() => new Promise<void>((resolve) => lookup.close(() => resolve())));
    const lookupUrl = `http://127.0.0.1:${(lookup.address() as { port: number }).port}/lookup`;
    const [eventId] = (await client.send({ name: "worker/order", data: { orderId: "o-7", lookupUrl } })).ids;
    // A note for the order, long before the run reaches its look-back wait for it.
    await client.send({ name: "worker/note", data: { orderId: "o-7", text: "leave at the door" } });
    const logs = () => [...worker!.output.slice(-30), "--- app ---", ...app!.output.slice(-15)].join("\n");
    const waiting = await waitFor(worker.url, eventId!, (run) => run.steps.some((s) => s.id === "payment" && s.status === "waiting"), 25_000, logs, API_KEY);
    expect(waiting.steps.find((s) => s.id === "reserve")).toMatchObject({ status: "completed", output: "res-o-7" });
    // The app Worker checkpointed its steps to the executor Worker, within its invocations.
    expect(worker.output.some((line) => line.includes('step "reserve" completed') && line.includes("(checkpoint)")), logs()).toBe(true);
    await client.send({ name: "worker/paid", data: { orderId: "o-7", amount: 42 } });
    // Sent while the run is still on its way to the wait (the executor Worker holds the request
    // until it gets there), and beside it one that no run waits for: 404, as a typed error.
    const [approved, nobody] = await Promise.all([
      client.sendSignal({ signal: "approve/o-7", data: { by: "ada" } }),
      client.sendSignal({ signal: "approve/nobody" }).catch((error: unknown) => error),
    ]);
    expect(nobody).toBeInstanceOf(SignalNotDeliveredError);
    // Then a callback URL the executor Worker minted: one POST, no key; a second is refused.
    const reviewing = await waitFor(worker.url, eventId!, (run) => run.steps.some((s) => s.id === "reviewed" && s.status === "waiting"), 20_000, logs, API_KEY);
    const { url: reviewUrl } = reviewing.steps.find((s) => s.id === "review-link")!.output as { url: string };
    expect(reviewUrl.startsWith(`${worker.url}/api/callbacks/`)).toBe(true);
    const posted = await fetch(reviewUrl, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ok: true }) });
    expect(posted.status, await posted.clone().text()).toBe(200);
    expect((await fetch(reviewUrl, { method: "POST", body: "again" })).status).toBe(409);
    const done = await waitFor(worker.url, eventId!, (run) => run.status === "completed", 20_000, logs, API_KEY);
    expect(approved).toMatchObject({ runId: done.id, stepId: "approval" });
    const output = done.output as { reserved: string; reportLength: number; slept: number; amount: number | null; note: string | null; key: string; approvedBy: string | null; reviewed: unknown; lookedUpWith: string };
    expect(output.lookedUpWith).toBe("Bearer worker-lookup-key");
    expect(output.approvedBy).toBe("ada");
    expect(output.reviewed).toEqual({ ok: true });
    expect(output.reserved).toBe("res-o-7");
    expect(output.note).toBe("leave at the door");
    expect(output.key).toBe(`stepwise-${createHash("sha256").update(`${done.id}\u0000key`).digest("hex")}`);
    // Left out of the invocations after the sleep, read back by the app Worker from the executor Worker.
    expect(output.reportLength).toBe(1_500_000);
    expect(output.amount).toBe(42);
    const lateness = output.slept - 2_000;
    console.log(`[${topology}] 2 s sleep in workerd woke after ${output.slept} ms: lateness ${lateness} ms (bound ${LATENESS_BOUND_MS} ms)`);
    expect(output.slept).toBeGreaterThanOrEqual(2_000);
    // Woken by the scheduler's alarm, not by the cron a minute later (which wrangler dev never fires).
    expect(lateness).toBeLessThan(LATENESS_BOUND_MS);

    // A cron trigger's tick, queued at registration, is woken by the Scheduler's alarm too.
    const tick = nextCronTick(HEARTBEAT_CRON, new Date())!;
    const beat = await waitFor(worker.url, cronEventId("worker-app-e2e-heartbeat", HEARTBEAT_CRON, tick), (run) => run.status === "completed", 20_000, logs, API_KEY);
    const { scheduledAt, ranAt } = beat.output as { scheduledAt: string; ranAt: number };
    expect(scheduledAt).toBe(tick.toISOString());
    console.log(`[${topology}] cron tick in workerd ran ${ranAt - tick.getTime()} ms after its time`);
    expect(ranAt - tick.getTime()).toBeLessThan(LATENESS_BOUND_MS);

    // The cron safety net (reconcile, sweep, drain, re-arm) runs cleanly in workerd too.
    const cron = await fetch(`${worker.url}/__scheduled?cron=*+*+*+*+*`);
    expect(cron.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(await cron.text()).toContain("Ran scheduled event");
    const both = { executor: worker, app };
    expect(worker.output.filter((line) => /cron drain failed|ERROR/.test(line)), timeline(/cron drain failed|ERROR/, both, "executor")).toEqual([]);
    expect(app.output.filter((line) => /ERROR|Uncaught/.test(line)), timeline(/ERROR|Uncaught/, both, "app")).toEqual([]);
  }, 60_000);

  it("holds a concurrency key to its limit and a throttle to its rate, woken by the alarm", async (context) => {
    if (!worker || !app) return context.skip(`wrangler dev could not start: ${String(startError)}`);
    const client = new Stepwise({ id: "worker-app-e2e", baseUrl: worker.url, eventKey: EVENT_KEY, schemas });
    // Registered by the test before; a PUT moments later is answered 429 (the app limits its registrations), and that is fine.
    expect([200, 429]).toContain((await fetch(`${app.url}/api/durable`, { method: "PUT" })).status);
    const logs = () => [...worker!.output.slice(-30), "--- app ---", ...app!.output.slice(-15)].join("\n");
    const { ids: limitedIds } = await client.send(Array.from({ length: 3 }, () => ({ name: "worker/limited" as const, data: { group: topology } })));
    const { ids: pacedIds } = await client.send(Array.from({ length: 5 }, (_, n) => ({ name: "worker/paced" as const, data: { n } })));
    const outputs = async (ids: string[]) =>
      Promise.all(ids.map(async (id) => (await waitFor(worker!.url, id, (run) => run.status === "completed", 20_000, logs, API_KEY)).output));
    // One at a time: each held its slot until it ended, so none began before the one before it ended.
    const held = ((await outputs(limitedIds)) as Array<{ start: number; end: number }>).sort((a, b) => a.start - b.start);
    for (let i = 1; i < held.length; i++) expect(held[i]!.start, JSON.stringify(held)).toBeGreaterThanOrEqual(held[i - 1]!.end);
    // Four a second, one at a time: five starts take at least a second (less what the first arrived late).
    const started = ((await outputs(pacedIds)) as number[]).sort((a, b) => a - b);
    console.log(`[${topology}] throttled starts in workerd: ${started.map((at) => at - started[0]!).join(", ")} ms`);
    expect(started.at(-1)! - started[0]!).toBeGreaterThanOrEqual(750);
  }, 60_000);

  it("debounces a burst into one run with its last event, and batches events into runs of three", async (context) => {
    if (!worker || !app) return context.skip(`wrangler dev could not start: ${String(startError)}`);
    const client = new Stepwise({ id: "worker-app-e2e", baseUrl: worker.url, eventKey: EVENT_KEY, schemas });
    const logs = () => [...worker!.output.slice(-30), "--- app ---", ...app!.output.slice(-15)].join("\n");
    const ended = (id: string) => waitFor(worker!.url, id, (run) => ["completed", "skipped"].includes(run.status), 20_000, logs, API_KEY);
    const doc = `doc-${topology}`;
    const edits: string[] = [];
    for (let n = 0; n < 3; n++) edits.push(...(await client.send({ name: "worker/edited", data: { doc, n } })).ids);
    const runs = await Promise.all(edits.map(ended));
    expect(runs.map((run) => run.status)).toEqual(["skipped", "skipped", "completed"]);
    expect(runs[2]!.output).toBe(2);
    const { ids } = await client.send(Array.from({ length: 4 }, (_, n) => ({ name: "worker/usage" as const, data: { n } })));
    const batches = new Map((await Promise.all(ids.map(ended))).map((run) => [run.id, run.output as number[]]));
    // Three in one batch, started when it filled; the fourth alone, at its timeout.
    expect([...batches.values()].sort((a, b) => b.length - a.length)).toEqual([[0, 1, 2], [3]]);
  }, 60_000);
});
