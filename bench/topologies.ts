/**
 * The three ways to run the executor, each as its own process (so its memory is its own):
 *   embedded        `stepwise dev` on PGlite in a temp folder
 *   postgres-tcp    `stepwise start`, record and queue in PostgreSQL over TCP (the pg driver)
 *   postgres-neon   the same through the Neon driver (WebSocket, through the ws bridge)
 *   postgres+redis  `stepwise start`, record in PostgreSQL (Neon driver), queue in Redis (@upstash/redis, REST bridge)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createNeonClient } from "@stepwise/store-postgres";
import { SIGNING_KEY } from "./app.ts";

/** The bench reads the run API with this key (the executor's STEPWISE_API_KEY). */
export const BENCH_API_KEY = "bench-api-key";

export type TopologyName = "embedded" | "postgres-tcp" | "postgres-neon" | "postgres+redis";
export const TOPOLOGIES: TopologyName[] = ["embedded", "postgres-tcp", "postgres-neon", "postgres+redis"];

export interface Topology {
  name: TopologyName;
  url: string;
  pid: number;
  /** Resident memory of the executor process, in MB. */
  rssMb(): number;
  stop(): Promise<void>;
}

const ADMIN_URL = "postgres://postgres@127.0.0.1:5432/test";
const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** How the bench starts the `stepwise` command: compiled, as a user's install runs it, or the repository's source through tsx. */
export interface ExecutorCommand {
  /** The module `node` runs: the compiled `bin.js`, or `apps/server/bin/stepwise.mjs`. */
  bin: string;
  label: "compiled" | "source";
}

/** The repository's `stepwise` command: TypeScript source through tsx. */
export const SOURCE_EXECUTOR: ExecutorCommand = { bin: "apps/server/bin/stepwise.mjs", label: "source" };

/**
 * Builds the published packages (scripts/build.mjs) into a cache folder inside the repository's
 * node_modules, linked so that their compiled `stepwise` command runs in place: plain Node, no
 * TypeScript loader, other dependencies from the repository's node_modules.
 */
export async function buildExecutor(): Promise<ExecutorCommand> {
  const out = join(ROOT, "node_modules/.cache/stepwise-bench");
  const { build } = (await import(join(ROOT, "scripts/build.mjs"))) as { build(options: { out: string; link: boolean }): unknown };
  build({ out, link: true });
  return { bin: join(out, "server/bin.js"), label: "compiled" };
}

export async function startTopology(name: TopologyName, appUrl: string, executor: ExecutorCommand, concurrency?: number): Promise<Topology> {
  const cleanups: Array<() => Promise<void> | void> = [];
  const port = await freePort();
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    STEPWISE_SIGNING_KEY: SIGNING_KEY,
    STEPWISE_EVENT_KEY: "bench",
    STEPWISE_API_KEY: BENCH_API_KEY,
    ...(concurrency !== undefined && { STEPWISE_CONCURRENCY: String(concurrency) }),
  };
  // STEPWISE_BENCH_PROFILE=<dir> writes a CPU profile of each executor (on exit) to <dir>; the app's goes there too.
  const profile = process.env.STEPWISE_BENCH_PROFILE;
  const args = [...(profile ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : []), executor.bin];
  if (name === "embedded") {
    const dir = mkdtempSync(join(tmpdir(), "stepwise-bench-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    args.push("dev", "--data-dir", dir);
  } else {
    // Bridges run as processes of their own, as Neon's and Upstash's proxies are services of their own.
    const bridgePort = await freePort();
    cleanups.push(await startBridge(["ws-tcp", "--port", String(bridgePort)]));
    const wsProxy = `127.0.0.1:${bridgePort}/v2`;
    const database = `stepwise_bench_${Date.now().toString(36)}`;
    const admin = createNeonClient({ connectionString: ADMIN_URL, wsProxy, max: 1 });
    await admin.query(`CREATE DATABASE ${database}`);
    cleanups.push(async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.close();
    });
    args.push("start", "--database-url", `postgres://postgres@127.0.0.1:5432/${database}`);
    if (name === "postgres-tcp") env.STEPWISE_PG_DRIVER = "pg";
    else args.push("--ws-proxy", wsProxy);
    if (name === "postgres+redis") {
      const token = "bench-token";
      const redisPort = await freePort();
      cleanups.push(await startBridge(["upstash", "--port", String(redisPort), "--token", token]));
      Object.assign(env, {
        UPSTASH_REDIS_REST_URL: `http://127.0.0.1:${redisPort}`,
        UPSTASH_REDIS_REST_TOKEN: token,
        STEPWISE_REDIS_PREFIX: `bench:${database}:`,
      });
    }
  }
  args.push("--port", String(port), "--host", "127.0.0.1", "--app", appUrl);
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  // STEPWISE_BENCH_LOG=<file> appends every line the executor writes to <file>.
  const logFile = process.env.STEPWISE_BENCH_LOG;
  if (logFile) for (const stream of [child.stdout!, child.stderr!]) stream.on("data", (chunk) => appendFileSync(logFile, chunk));
  const output: string[] = [];
  // Keep the last lines only: the executor logs every step, and the soak runs for minutes.
  const keep = (chunk: unknown) => {
    output.push(String(chunk));
    if (output.length > 200) output.splice(0, output.length - 200);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const url = `http://127.0.0.1:${port}`;
  await waitForApp(url, child, output);
  return {
    name,
    url,
    pid: child.pid!,
    rssMb: () => rssMb(child.pid!),
    async stop() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
      for (const cleanup of cleanups.reverse()) await cleanup();
    },
  };
}

/** Starts a dev bridge process; resolves once it listens, with a function that stops it. */
async function startBridge(args: string[]): Promise<() => Promise<void>> {
  const child = spawn(process.execPath, ["--import", "tsx", "packages/dev-bridges/src/cli.ts", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (chunk) => {
      output += String(chunk);
      if (output.includes("listening")) resolve();
    });
    child.stderr!.on("data", (chunk) => (output += String(chunk)));
    child.once("exit", (code) => reject(new Error(`bridge ${args[0]} exited (${code}): ${output}`)));
  });
  child.removeAllListeners("exit");
  return async () => {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  };
}

async function waitForApp(url: string, child: ChildProcess, output: string[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`executor exited:\n${output.join("")}`);
    const response = await fetch(`${url}/api/functions`, { headers: { authorization: `Bearer ${BENCH_API_KEY}` } }).catch(() => null);
    if (response?.ok && ((await response.json()) as { functions: unknown[] }).functions.length >= 5) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`executor did not start:\n${output.join("")}`);
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round((kb / 1024) * 10) / 10;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
