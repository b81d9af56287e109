/**
 * The three ways to run the executor, each as its own process (so its memory is its own):
 *   embedded        `stepwise dev` on PGlite in a temp folder
 *   postgres        `stepwise start`, record and queue in PostgreSQL (Neon driver, ws bridge)
 *   postgres+redis  `stepwise start`, record in PostgreSQL, queue in Redis (@upstash/redis, REST bridge)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startUpstashBridge, startWsTcpBridge } from "@stepwise/dev-bridges";
import { createNeonClient } from "@stepwise/store-postgres";
import { SIGNING_KEY } from "./app.ts";

export type TopologyName = "embedded" | "postgres" | "postgres+redis";
export const TOPOLOGIES: TopologyName[] = ["embedded", "postgres", "postgres+redis"];

export interface Topology {
  name: TopologyName;
  url: string;
  pid: number;
  /** Resident memory of the executor process, in MB. */
  rssMb(): number;
  stop(): Promise<void>;
}

const ADMIN_URL = "postgres://postgres@127.0.0.1:5432/test";

export async function startTopology(name: TopologyName, appUrl: string, concurrency: number): Promise<Topology> {
  const cleanups: Array<() => Promise<void> | void> = [];
  const port = await freePort();
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    STEPWISE_SIGNING_KEY: SIGNING_KEY,
    STEPWISE_EVENT_KEY: "bench",
    STEPWISE_CONCURRENCY: String(concurrency),
  };
  const args = ["apps/server/bin/stepwise.mjs"];
  if (name === "embedded") {
    const dir = mkdtempSync(join(tmpdir(), "stepwise-bench-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    args.push("dev", "--data-dir", dir);
  } else {
    const bridge = await startWsTcpBridge();
    cleanups.push(() => bridge.close());
    const database = `stepwise_bench_${Date.now().toString(36)}`;
    const admin = createNeonClient({ connectionString: ADMIN_URL, wsProxy: bridge.wsProxy, max: 1 });
    await admin.query(`CREATE DATABASE ${database}`);
    cleanups.push(async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.close();
    });
    args.push("start", "--database-url", `postgres://postgres@127.0.0.1:5432/${database}`, "--ws-proxy", `127.0.0.1:${bridge.port}/v2`);
    if (name === "postgres+redis") {
      const token = "bench-token";
      const redis = await startUpstashBridge({ port: 0, token });
      cleanups.push(() => redis.close());
      Object.assign(env, { UPSTASH_REDIS_REST_URL: redis.url, UPSTASH_REDIS_REST_TOKEN: token, STEPWISE_REDIS_PREFIX: `bench:${database}:` });
    }
  }
  args.push("--port", String(port), "--host", "127.0.0.1", "--app", appUrl);
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const output: string[] = [];
  child.stdout!.on("data", (chunk) => output.push(String(chunk)));
  child.stderr!.on("data", (chunk) => output.push(String(chunk)));
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

async function waitForApp(url: string, child: ChildProcess, output: string[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`executor exited:\n${output.join("")}`);
    const response = await fetch(`${url}/api/functions`, { headers: { authorization: `Bearer ${SIGNING_KEY}` } }).catch(() => null);
    if (response?.ok && ((await response.json()) as { functions: unknown[] }).functions.length >= 4) return;
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
