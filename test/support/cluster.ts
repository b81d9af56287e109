/**
 * A production deployment inside a test: several `stepwise start` processes (real child
 * processes, so they can be SIGKILLed) sharing a fresh PostgreSQL database (through the Neon
 * driver and the ws-tcp bridge) and, optionally, Redis (through the Upstash bridge); an app
 * served in this process, so the test can count how often each step body ran.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { serve as serveNode, type ServerType } from "@hono/node-server";
import type { RunView } from "@stepwise/engine";
import type { AnyStepwiseFunction, Stepwise } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/hono";
import { Hono } from "hono";
import { createTestDatabase, testBridge, type TestDatabase } from "./postgres.ts";
import { freePort } from "./net.ts";
import { startTestRedis, type TestRedis } from "./redis.ts";

export const SIGNING_KEY = "cluster-signing-key";
export const EVENT_KEY = "cluster-event-key";
export const API_KEY = "cluster-api-key";

export interface ClusterOptions {
  client: Stepwise<any>;
  functions: AnyStepwiseFunction[];
  /** An app served elsewhere (a process the test runs and kills): none is served in this process. */
  appUrl?: string;
  /** The executors' ports, when the test must know them before they start (an app that calls one). */
  ports?: number[];
  executors: number;
  /** Queue in Redis (on this database index, so the test may flush it) or in Postgres. */
  redisDb?: number;
  env?: Record<string, string>;
  /** A database other than a fresh one on 127.0.0.1:5432 (e.g. a cluster the test restarts). */
  databaseUrl?: string;
  /** The ws-tcp bridge to reach it through (`host:port/v2`), when not the shared one. */
  wsProxy?: string;
}

export interface Executor {
  port: number;
  process: ChildProcess;
  output: string[];
}

export class Cluster {
  readonly executors: Executor[] = [];
  db?: TestDatabase;
  redis?: TestRedis;
  appUrl = "";
  private app?: ServerType;
  private databaseUrl = "";
  private wsProxy = "";

  constructor(private readonly options: ClusterOptions) {}

  async start(): Promise<void> {
    if (this.options.databaseUrl) {
      this.databaseUrl = this.options.databaseUrl;
    } else {
      this.db = await createTestDatabase("cluster");
      this.databaseUrl = this.db.connectionString;
    }
    this.wsProxy = this.options.wsProxy ?? `127.0.0.1:${(await testBridge()).port}/v2`;
    if (this.options.redisDb !== undefined) this.redis = await startTestRedis("cluster", this.options.redisDb);
    if (this.options.appUrl) this.appUrl = this.options.appUrl;
    else {
      const app = new Hono();
      app.on(["GET", "POST", "PUT"], "/api/durable", serve({ client: this.options.client, functions: this.options.functions }));
      await new Promise<void>((resolve) => {
        this.app = serveNode({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) => {
          this.appUrl = `http://127.0.0.1:${info.port}/api/durable`;
          resolve();
        });
      });
    }
    await Promise.all(Array.from({ length: this.options.executors }, (_, i) => this.startExecutor(i)));
  }

  /** Starts (or restarts) executor `index` and waits until it serves the API with the app synced. */
  async startExecutor(index: number): Promise<Executor> {
    const port = this.executors[index]?.port ?? this.options.ports?.[index] ?? (await freePort());
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      STEPWISE_DEV: "",
      STEPWISE_SIGNING_KEY: SIGNING_KEY,
      STEPWISE_API_KEY: API_KEY,
      STEPWISE_EVENT_KEY: EVENT_KEY,
      STEPWISE_RETRY_INITIAL_MS: "50",
      STEPWISE_RETRY_MAX_MS: "1000",
      ...(this.redis && {
        UPSTASH_REDIS_REST_URL: this.redis.url,
        UPSTASH_REDIS_REST_TOKEN: this.redis.token,
        STEPWISE_REDIS_PREFIX: this.redis.prefix,
      }),
      ...this.options.env,
    };
    const args = ["apps/server/bin/stepwise.mjs", "start", "--host", "127.0.0.1", "--port", String(port)];
    args.push("--database-url", this.databaseUrl, "--ws-proxy", this.wsProxy, "--app", this.appUrl);
    const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    const executor: Executor = { port, process: child, output: [] };
    for (const stream of [child.stdout!, child.stderr!]) stream.on("data", (chunk) => executor.output.push(String(chunk)));
    this.executors[index] = executor;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`executor ${index} exited:\n${executor.output.join("")}`);
      const functions = await this.api<{ functions: unknown[] }>("/api/functions", {}, port).catch(() => null);
      if (functions && functions.functions.length >= this.options.functions.length) return executor;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`executor ${index} did not start:\n${executor.output.join("")}`);
  }

  /** SIGKILL: no shutdown, no release of leases, in-flight HTTP calls cut. */
  async kill(index: number): Promise<void> {
    const { process: child } = this.executors[index]!;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }

  async api<T>(path: string, init: RequestInit = {}, port = this.anyLivePort()): Promise<T> {
    const headers = { authorization: `Bearer ${path === "/api/events" ? EVENT_KEY : API_KEY}`, "content-type": "application/json" };
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { ...init, headers: { ...headers, ...init.headers } });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  }

  private anyLivePort(): number {
    const live = this.executors.filter((e) => e.process.exitCode === null && e.process.signalCode === null);
    if (live.length === 0) throw new Error("no live executor");
    return live[Math.floor(Math.random() * live.length)]!.port;
  }

  async send(events: unknown[]): Promise<string[]> {
    return (await this.api<{ ids: string[] }>("/api/events", { method: "POST", body: JSON.stringify(events) })).ids;
  }

  async runs(eventIds: string[]): Promise<RunView[]> {
    const views: RunView[] = [];
    for (const id of eventIds) {
      const { runs } = await this.api<{ runs: RunView[] }>(`/api/events/${id}/runs`);
      views.push(...runs);
    }
    return views;
  }

  logs(): string {
    return this.executors.map((e, i) => `--- executor ${i}\n${e.output.join("")}`).join("\n");
  }

  async stop(): Promise<void> {
    await Promise.all(this.executors.map((_, i) => this.kill(i)));
    await new Promise<void>((resolve) => (this.app ? this.app.close(() => resolve()) : resolve()));
    await this.redis?.close();
    await this.db?.drop();
  }
}

