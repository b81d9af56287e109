/**
 * A whole Stepwise deployment inside a test: the executor's HTTP API and worker on a real
 * port, with its store (PGlite in memory, or a fresh database on the real PostgreSQL through
 * the Neon driver), and an app serving functions on /api/durable over real HTTP, registered
 * the way users register (`PUT /api/durable`).
 */
import { serve as serveNode, type ServerType } from "@hono/node-server";
import { DEV_SIGNING_KEY } from "@stepwise/protocol";
import { Executor, silentLogger, type ExecutorOptions, type Logger, type RunView, type Store } from "@stepwise/engine";
import { serve } from "@stepwise/sdk/hono";
import type { AnyStepwiseFunction, Stepwise } from "@stepwise/sdk";
import { startServer, type RunningServer, type ServerOptions } from "@stepwise/server";
import { PostgresStore } from "@stepwise/store-postgres";
import { Hono } from "hono";
import { RedisQueue } from "@stepwise/queue-redis";
import { freshPglite } from "./pglite.ts";
import { createTestDatabase, postgresAvailable } from "./postgres.ts";
import { redisAvailable, startTestRedis, type TestRedis } from "./redis.ts";

/** The topologies: embedded PGlite; Postgres only; Postgres as the record with the queue in Redis. */
export type StoreKind = "pglite" | "postgres" | "postgres+redis";
/** The topologies every end-to-end suite runs against. */
export const STORE_KINDS: StoreKind[] = [
  "pglite",
  ...(postgresAvailable ? (["postgres"] as const) : []),
  ...(postgresAvailable && redisAvailable ? (["postgres+redis"] as const) : []),
];

export async function openStore(kind: StoreKind): Promise<{ store: Store; redis?: TestRedis; cleanup(): Promise<void> }> {
  if (kind === "pglite") {
    const store = new PostgresStore(await freshPglite());
    return { store, cleanup: async () => {} };
  }
  const db = await createTestDatabase("e2e");
  if (kind === "postgres") return { store: db.store(), cleanup: () => db.drop() };
  const redis = await startTestRedis("e2e");
  const readyQueue = new RedisQueue({ url: redis.url, token: redis.token, prefix: redis.prefix });
  return {
    redis,
    store: new PostgresStore(db.client(), { readyQueue }),
    cleanup: async () => {
      await db.drop();
      await redis.close();
    },
  };
}

/** Collects executor log lines so tests can assert on them (and print them on failure). */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    info: (line) => lines.push(line),
    warn: (line) => lines.push(`WARN ${line}`),
    error: (line) => lines.push(`ERROR ${line}`),
  };
}

export interface Stack {
  executor: RunningServer;
  /** The store the executor works on (for assertions on what it holds). */
  store: Store;
  /** With the queue in Redis: where it is (to flush it). */
  redis?: TestRedis;
  appUrl: string;
  log: Logger & { lines: string[] };
  /** Sends events through the executor's API as a user would; returns their IDs. */
  send(events: unknown): Promise<string[]>;
  runsOf(eventId: string): Promise<RunView[]>;
  /** Polls the run API until the event's run of `functionId` ends (or `status` is reached). */
  waitForRun(eventId: string, options?: { functionId?: string; status?: string; timeoutMs?: number }): Promise<RunView>;
  getRun(runId: string): Promise<RunView>;
  /** Stops the second executor (when one was asked for), the app, the executor and the store. */
  close(): Promise<void>;
}

/** A stack with a second executor on the same store. */
export interface TwoExecutorStack extends Stack {
  /**
   * Another executor process sharing the store (its own worker name, so its own leases), as a
   * deployment with several executors runs; it sends events through its own `sendEvents`.
   */
  second: Executor;
}

/** {@link startStack} with a second executor on the same store, stopped by `close()` before the rest. */
export async function startTwoExecutors(options: Parameters<typeof startStack>[0] & { second?: Partial<ExecutorOptions> }): Promise<TwoExecutorStack> {
  const stack = await startStack(options);
  const second = new Executor({ store: stack.store, signingKey: DEV_SIGNING_KEY, log: silentLogger, registryRefreshMs: 0, ...options.second });
  await second.start();
  return {
    ...stack,
    second,
    async close() {
      await second.stop();
      await stack.close();
    },
  };
}

export async function startStack(options: {
  store: StoreKind;
  client: Stepwise<any>;
  functions: AnyStepwiseFunction[];
  executor?: Partial<ServerOptions>;
  /**
   * Sits between the network and the app, like a load balancer: answer a request itself (a
   * fault), or call `app` (the real app) and return its answer, changed or not.
   */
  intercept?: (request: Request, app: (request: Request) => Promise<Response>) => Promise<Response>;
  /** Sits between the executor and its store (the real one): to act at a chosen moment of a call. */
  wrapStore?: (store: Store) => Store;
}): Promise<Stack> {
  const auth: Record<string, string> = options.executor?.eventKey ? { authorization: `Bearer ${options.executor.eventKey}` } : {};
  // Outside dev mode the run API needs the API key.
  const management: Record<string, string> = options.executor?.apiKey ? { authorization: `Bearer ${options.executor.apiKey}` } : {};
  const { store, redis, cleanup } = await openStore(options.store);
  const log = memoryLogger();
  const executor = await startServer({
    store: options.wrapStore ? options.wrapStore(store) : store,
    dev: true,
    port: 0,
    log: process.env.STEPWISE_TEST_LOG ? { ...silentLogger, ...consoleTee(log) } : log,
    backoff: { initialMs: 20, maxMs: 200 },
    pollMs: 200,
    // Reload the function registry at every use, so no code path may rely on a warm cache.
    registryRefreshMs: 0,
    // The apps under test listen on loopback; an operator allows that as here.
    allowPrivateAppUrls: true,
    ...options.executor,
  });
  // The app knows its own public URL (outside dev mode it never takes it from a request), so it is mounted once listening.
  let app = new Hono();
  const appFetch = async (request: Request) => app.fetch(request);
  const intercept = options.intercept;
  const { server, url: appUrl } = await listen(intercept ? (request) => intercept(request, appFetch) : appFetch);
  app = new Hono();
  app.all("/api/durable", serve({ client: options.client, functions: options.functions, serveUrl: appUrl }));
  process.env.STEPWISE_BASE_URL = executor.url;
  const put = await fetch(appUrl, { method: "PUT" });
  if (!put.ok) throw new Error(`app registration failed: ${put.status} ${await put.text()}`);

  const api = async (path: string, init?: RequestInit) => {
    const response = await fetch(`${executor.url}${path}`, { ...init, headers: { ...management, ...init?.headers } });
    const body = (await response.json()) as Record<string, unknown>;
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${JSON.stringify(body)}`);
    return body;
  };
  const runsOf = async (eventId: string) => (await api(`/api/events/${eventId}/runs`)).runs as RunView[];
  const terminal = ["completed", "failed", "cancelled", "skipped"];

  return {
    executor,
    store,
    redis,
    appUrl,
    log,
    async send(events) {
      const body = await api("/api/events", { method: "POST", body: JSON.stringify(events), headers: { "content-type": "application/json", ...auth } });
      return body.ids as string[];
    },
    runsOf,
    getRun: async (runId) => (await api(`/api/runs/${runId}`)) as unknown as RunView,
    async waitForRun(eventId, { functionId, status, timeoutMs = 15_000 } = {}) {
      const deadline = Date.now() + timeoutMs;
      let last: RunView | undefined;
      while (Date.now() < deadline) {
        const runs = await runsOf(eventId);
        last = runs.find((run) => !functionId || run.functionId === functionId);
        if (last && (status ? last.status === status : terminal.includes(last.status))) return last;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      throw new Error(
        `run for event ${eventId} did not reach ${status ?? "an end"} in ${timeoutMs}ms; last: ${JSON.stringify(last)}\n` +
          log.lines.slice(-30).join("\n"),
      );
    },
    async close() {
      // The executor still works the queue (a cron tick a second) and calls the app over kept-alive
      // connections: one busy when close() begins is not closed as idle, and, used again before
      // Node's keep-alive timeout (5 s), it would hold close() for ever. Drop them all.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      await closed;
      await executor.close();
      await cleanup();
    },
  };
}

function consoleTee(log: Logger & { lines: string[] }): Logger {
  return {
    info: (line) => (log.info(line), console.log(line)),
    warn: (line) => (log.warn(line), console.warn(line)),
    error: (line) => (log.error(line), console.error(line)),
  };
}

function listen(fetch: (request: Request) => Response | Promise<Response>) {
  return new Promise<{ server: ServerType; url: string }>((resolve) => {
    const server = serveNode({ fetch, port: 0, hostname: "127.0.0.1" }, (info) =>
      resolve({ server, url: `http://127.0.0.1:${info.port}/api/durable` }),
    );
  });
}
