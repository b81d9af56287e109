/**
 * What the workloads are measured against, in the same run on the same machine: a loopback
 * HTTP round trip (through fetch, as the executor calls apps, and through node:http with a
 * kept-alive connection, the cheapest in Node, as the SDK checkpoints), a Postgres
 * `INSERT … COMMIT` round trip over TCP (the pg driver) and through the Neon driver and the ws
 * bridge (each as an executor of that topology writes), the same on PGlite, and a Redis round
 * trip (through @upstash/redis and the REST bridge).
 */
import { Agent, createServer, request } from "node:http";
import { startUpstashBridge, startWsTcpBridge } from "@stepwise/dev-bridges";
import { createNeonClient, createPgClient, createPgliteClient, type SqlClient } from "@stepwise/store-postgres";
import { Redis } from "@upstash/redis";
import { median } from "./stats.ts";

export interface Baselines {
  /** A loopback round trip through fetch (undici), as the executor calls apps. */
  httpMs: number;
  /** The same over node:http with a kept-alive connection, as the SDK sends checkpoints on Node: the floor's HTTP part. */
  httpNodeMs: number;
  /** Through the Neon driver and the ws bridge. */
  postgresCommitMs: number;
  /** Over TCP with the pg driver. */
  postgresTcpCommitMs: number;
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
  // The same round trip over node:http with a kept-alive connection: the cheapest there is in Node.
  const agent = new Agent({ keepAlive: true });
  const httpNodeMs = await timeEach(ROUNDS, () =>
    new Promise<void>((resolve, reject) => {
      const req = request(`http://127.0.0.1:${port}/`, { method: "POST", agent, headers: { "content-length": "2" } }, (res) => {
        res.resume();
        res.on("end", () => resolve());
      });
      req.on("error", reject);
      req.end("{}");
    }),
  );
  agent.destroy();
  server.close();

  // An autocommit INSERT into an ordinary table: one round trip that writes and commits durably
  // (the WAL flushed, as every commit of the executor is). A temporary or unlogged table would
  // skip the flush and make the floor look twice as low as it is.
  const table = `stepwise_bench_baseline_${process.pid}`;
  const commit = (client: SqlClient) => () => client.query(`INSERT INTO ${table} DEFAULT VALUES`);
  const tcp = createPgClient({ connectionString: "postgres://postgres@127.0.0.1:5432/test", max: 1 });
  await tcp.query(`CREATE TABLE IF NOT EXISTS ${table} (id serial, at timestamptz DEFAULT now())`);
  const postgresTcpCommitMs = await timeEach(ROUNDS, commit(tcp));

  const bridge = await startWsTcpBridge();
  const pg = createNeonClient({ connectionString: "postgres://postgres@127.0.0.1:5432/test", wsProxy: bridge.wsProxy, max: 1 });
  const postgresCommitMs = await timeEach(ROUNDS, commit(pg));
  await pg.close();
  await bridge.close();
  await tcp.query(`DROP TABLE ${table}`);
  await tcp.close();

  const lite = createPgliteClient();
  await lite.query(`CREATE TABLE ${table} (id serial, at timestamptz DEFAULT now())`);
  const pgliteCommitMs = await timeEach(ROUNDS, commit(lite));
  await lite.close();

  const upstash = await startUpstashBridge({ port: 0, token: "baseline" });
  const redis = new Redis({ url: upstash.url, token: "baseline", enableAutoPipelining: false });
  const redisMs = await timeEach(ROUNDS, () => redis.incr("stepwise-bench:baseline"));
  await redis.del("stepwise-bench:baseline");
  await upstash.close();

  return { httpMs, httpNodeMs, postgresCommitMs, postgresTcpCommitMs, pgliteCommitMs, redisMs };
}
