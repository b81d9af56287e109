/**
 * `stepwise dev` or `stepwise start` run exactly as a user runs them: a child process of the
 * `stepwise` command with its default settings. Of the environment it gets only what a user
 * must give (keys, where Postgres and Redis are); every STEPWISE_* tuning variable of the test
 * process is removed, so nothing a test sets can hide a bug of the defaults.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./net.ts";
import { createTestDatabase, testBridge, type TestDatabase } from "./postgres.ts";
import { startTestRedis, type TestRedis } from "./redis.ts";

export type UserTopology = "dev" | "start: postgres" | "start: postgres+redis";

export const USER_SIGNING_KEY = "user-signing-key";
export const USER_EVENT_KEY = "user-event-key";
export const USER_API_KEY = "user-api-key";

export class UserExecutor {
  process?: ChildProcess;
  port = 0;
  output: string[] = [];
  db?: TestDatabase;
  redis?: TestRedis;
  private dataDir = "";
  private wsProxy = "";

  constructor(
    readonly topology: UserTopology,
    private readonly appUrl: string,
  ) {}

  get dev(): boolean {
    return this.topology === "dev";
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Prepares the stores (once) and starts the process; resolves when the app is synced. */
  async start(expectedFunctions: number): Promise<void> {
    if (this.dev) this.dataDir ||= mkdtempSync(join(tmpdir(), "stepwise-dev-"));
    if (!this.dev && !this.db) {
      this.db = await createTestDatabase("user");
      this.wsProxy = `127.0.0.1:${(await testBridge()).port}/v2`;
    }
    if (this.topology === "start: postgres+redis" && !this.redis) this.redis = await startTestRedis("user");
    this.port ||= await freePort();
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries(process.env)) if (value !== undefined && !name.startsWith("STEPWISE_")) env[name] = value;
    const args = ["apps/server/bin/stepwise.mjs", this.dev ? "dev" : "start", "--port", String(this.port), "--app", this.appUrl];
    if (this.dev) {
      args.push("--data-dir", this.dataDir);
    } else {
      Object.assign(env, { STEPWISE_SIGNING_KEY: USER_SIGNING_KEY, STEPWISE_EVENT_KEY: USER_EVENT_KEY, STEPWISE_API_KEY: USER_API_KEY });
      args.push("--host", "127.0.0.1", "--database-url", this.db!.connectionString, "--ws-proxy", this.wsProxy);
    }
    if (this.redis) Object.assign(env, { UPSTASH_REDIS_REST_URL: this.redis.url, UPSTASH_REDIS_REST_TOKEN: this.redis.token, STEPWISE_REDIS_PREFIX: this.redis.prefix });
    const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    this.process = child;
    for (const stream of [child.stdout!, child.stderr!]) stream.on("data", (chunk) => this.output.push(String(chunk)));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`stepwise ${this.topology} exited:\n${this.logs()}`);
      const listed = await this.api<{ functions: unknown[] }>("/api/functions").catch(() => null);
      if (listed && listed.functions.length >= expectedFunctions) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`stepwise ${this.topology} did not start:\n${this.logs()}`);
  }

  async api<T>(path: string, init: RequestInit = {}): Promise<T> {
    const key = path === "/api/events" ? USER_EVENT_KEY : USER_API_KEY;
    const headers = { "content-type": "application/json", ...(this.dev ? {} : { authorization: `Bearer ${key}` }) };
    const response = await fetch(`${this.url}${path}`, { ...init, headers: { ...headers, ...init.headers } });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  }

  async send(events: unknown[]): Promise<string[]> {
    return (await this.api<{ ids: string[] }>("/api/events", { method: "POST", body: JSON.stringify(events) })).ids;
  }

  /** CPU seconds (user + system) the process has used so far. */
  cpuSeconds(): number {
    const stat = readFileSync(`/proc/${this.process!.pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  }

  /** Sends SIGTERM; resolves with how long the process took to exit, and its exit code. */
  async terminate(): Promise<{ ms: number; code: number | null }> {
    const child = this.process!;
    const started = Date.now();
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    const code = await exited;
    return { ms: Date.now() - started, code };
  }

  logs(): string {
    return this.output.join("").slice(-6_000);
  }

  async stop(): Promise<void> {
    const child = this.process;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    }
    await this.redis?.close();
    await this.db?.drop();
  }
}
