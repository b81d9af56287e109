/**
 * What the workloads are measured against, in the same run on the same machine: a loopback
 * HTTP round trip (fetch to a Node server, as the executor calls apps), a Postgres
 * `INSERT … COMMIT` round trip (through the Neon driver and the ws bridge, as the executor
 * writes), and a Redis round trip (through @upstash/redis and the REST bridge).
 */
import { createServer } from "node:http";
import { startUpstashBridge, startWsTcpBridge } from "@stepwise/dev-bridges";
import { createNeonClient, createPgliteClient } from "@stepwise/store-postgres";
import { Redis } from "@upstash/redis";
import { median } from "./stats.ts";

export interface Baselines {
  httpMs: number;
  postgresCommitMs: number;
  pgliteCommitMs: number;
  redisMs: number;
}

const ROUNDS = 500;

async function timeEach(rounds: number, fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 50; i++) await fn(); // warm up connections and JIT
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const start = performance.now();
    await fn();
    samples.push(performance.now() - start);
  }
  return median(samples);
}

export async function measureBaselines(): Promise<Baselines> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.end('{"ok":true}'));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  const httpMs = await timeEach(ROUNDS, async () => (await fetch(`http://127.0.0.1:${port}/`, { method: "POST", body: "{}" })).text());
  server.close();

  const bridge = await startWsTcpBridge();
  const pg = createNeonClient({ connectionString: "postgres://postgres@127.0.0.1:5432/test", wsProxy: bridge.wsProxy, max: 1 });
  await pg.query("CREATE TEMP TABLE IF NOT EXISTS bench_baseline (id serial, at timestamptz DEFAULT now())");
  // An autocommit INSERT: one round trip that writes and commits.
  const commit = (client: typeof pg) => () => client.query("INSERT INTO bench_baseline DEFAULT VALUES");
  // A temp table lives in one session: keep one connection (max: 1) so the table exists for each insert.
  const postgresCommitMs = await timeEach(ROUNDS, commit(pg));
  await pg.close();
  await bridge.close();

  const lite = createPgliteClient();
  await lite.query("CREATE TABLE bench_baseline (id serial, at timestamptz DEFAULT now())");
  const pgliteCommitMs = await timeEach(ROUNDS, commit(lite));
  await lite.close();

  const upstash = await startUpstashBridge({ port: 0, token: "baseline" });
  const redis = new Redis({ url: upstash.url, token: "baseline", enableAutoPipelining: false });
  const redisMs = await timeEach(ROUNDS, () => redis.incr("stepwise-bench:baseline"));
  await redis.del("stepwise-bench:baseline");
  await upstash.close();

  return { httpMs, postgresCommitMs, pgliteCommitMs, redisMs };
}
