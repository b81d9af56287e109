/**
 * What the workloads are measured against, in the same run on the same machine: a loopback
 * HTTP round trip (through fetch, as the executor calls apps, and through node:http with a
 * kept-alive connection, the cheapest in Node, as the SDK checkpoints), a Postgres
 * `INSERT … COMMIT` round trip over TCP (the pg driver) and through the Neon driver and the ws
 * bridge (each as an executor of that topology writes), the same on PGlite, a Redis round
 * trip (through @upstash/redis and the REST bridge), and a step done by hand: a POST from this
 * process to a bare node:http server in another process that commits one row over TCP before
 * it answers (what any executor in Node pays per checkpoint, with nothing of Stepwise in it),
 * once at a time, as many chains at once as the executor has lanes by default (W2's bound, as
 * the single one is W1's), and W3's count started in the same instant (W3's bound: twenty
 * timers due together each need at least such a round trip and commit, on the same two cores).
 */
import { spawn } from "node:child_process";
import { Agent, createServer, request } from "node:http";
import { startUpstashBridge, startWsTcpBridge } from "@stepwise/dev-bridges";
import { DEFAULT_CONCURRENCY } from "@stepwise/engine";
import { createNeonClient, createPgClient, createPgliteClient, type SqlClient } from "@stepwise/store-postgres";
import { Redis } from "@upstash/redis";
import { median, percentile } from "./stats.ts";

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
  /** The step done by hand: a kept-alive POST to a node:http server process that commits one row over TCP, then answers. */
  handStepMs: number;
  /** Steps by hand per second with a chain per default lane at once, the server committing through a pool of 10 connections (the executor's defaults). */
  handStepsPerSecond: number;
  /** One step by hand after 2 s with nothing to do, as W3 alone wakes one run after its 2 s sleep: median of 5. */
  handStepAfterIdleMs: number;
  /** {@link HAND_BURST} steps by hand started in the same instant: when each ended, p50 and max over the rounds (median of each). */
  handBurst: { count: number; p50Ms: number; maxMs: number };
}

const ROUNDS = 500;

/** The hand-made step's server: node:http and the pg driver, one INSERT per request, in a process of its own. */
const HAND_STEP_SERVER = `
import { createServer } from "node:http";
import pg from "pg";
const client = new pg.Pool({ connectionString: process.argv[1], max: 10 });
const table = process.argv[2];
createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", async () => {
    JSON.parse(Buffer.concat(chunks).toString("utf8"));
    await client.query("INSERT INTO " + table + " DEFAULT VALUES");
    res.writeHead(200, { "content-type": "application/json", "content-length": 11 });
    res.end('{"ok":true}');
  });
}).listen(0, "127.0.0.1", function () { console.log(this.address().port); });
`;

/** Kept-alive POSTs of `body` to `port` over node:http: the cheapest HTTP there is in Node. */
function nodePoster(port: number, body: string) {
  const agent = new Agent({ keepAlive: true });
  const post = () =>
    new Promise<void>((resolve, reject) => {
      const req = request(`http://127.0.0.1:${port}/`, { method: "POST", agent, headers: { "content-length": Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on("end", () => resolve());
      });
      req.on("error", reject);
      req.end(body);
    });
  return { post, close: () => agent.destroy() };
}

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
  const plain = nodePoster(port, "{}");
  const httpNodeMs = await timeEach(ROUNDS, plain.post);
  plain.close();
  server.close();

  // An autocommit INSERT into an ordinary table: one round trip that writes and commits durably
  // (the WAL flushed, as every commit of the executor is). A temporary or unlogged table would
  // skip the flush and make the floor look twice as low as it is.
  const table = `stepwise_bench_baseline_${process.pid}`;
  const commit = (client: SqlClient) => () => client.query(`INSERT INTO ${table} DEFAULT VALUES`);
  const tcp = createPgClient({ connectionString: "postgres://postgres@127.0.0.1:5432/test", max: 1 });
  await tcp.query(`CREATE TABLE IF NOT EXISTS ${table} (id serial, at timestamptz DEFAULT now())`);
  const postgresTcpCommitMs = await timeEach(ROUNDS, commit(tcp));
  const { handStepMs, handStepsPerSecond, handBurst, handStepAfterIdleMs } = await measureHandSteps(table);

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

  return { httpMs, httpNodeMs, postgresCommitMs, postgresTcpCommitMs, pgliteCommitMs, redisMs, handStepMs, handStepsPerSecond, handBurst, handStepAfterIdleMs };
}

/** Chains of steps by hand going at once, as the executor's lanes do in W2. */
export const HAND_CHAINS = DEFAULT_CONCURRENCY;
/** Steps in all, as in W2's 200 runs of 5 steps and then some. */
const HAND_STEPS = 4_000;
/** Steps by hand started together, as W3's timers come due together. */
export const HAND_BURST = 20;
const HAND_BURST_ROUNDS = 20;

async function measureHandSteps(table: string): Promise<Pick<Baselines, "handStepMs" | "handStepsPerSecond" | "handBurst" | "handStepAfterIdleMs">> {
  const child = spawn(process.execPath, ["--input-type=module", "-e", HAND_STEP_SERVER, "postgres://postgres@127.0.0.1:5432/test", table], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.once("data", (chunk) => resolve(Number(String(chunk).trim())));
      child.once("exit", (code) => reject(new Error(`the hand-made step's server exited (${code})`)));
    });
    // About what a checkpoint carries: the run, the lease token, the step and a small output.
    const body = JSON.stringify({ run: { id: "01KBENCH", appId: "bench", functionId: "sequence" }, token: "1.1.executor-x", step: { id: "s1", name: "s1", position: 1, output: 1, durationMs: 0 } });
    const poster = nodePoster(port, body);
    const handStepMs = await timeEach(ROUNDS, poster.post);
    // One connection per chain (as an app's invocations each send their own checkpoints).
    const chains = Array.from({ length: HAND_CHAINS }, () => nodePoster(port, body));
    await Promise.all(chains.map(async (chain) => { for (let i = 0; i < 20; i++) await chain.post(); }));
    const start = performance.now();
    const perChain = Math.ceil(HAND_STEPS / HAND_CHAINS);
    await Promise.all(chains.map(async (chain) => { for (let i = 0; i < perChain; i++) await chain.post(); }));
    const handStepsPerSecond = Math.round((HAND_CHAINS * perChain) / ((performance.now() - start) / 1000));
    // Each on a connection of its own (as the executor invokes each woken run), all at once;
    // rounds apart, as W3's batches of timers are.
    const burst = chains.slice(0, HAND_BURST);
    const p50s: number[] = [];
    const maxes: number[] = [];
    for (let round = 0; round < HAND_BURST_ROUNDS; round++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const at = performance.now();
      const ended = await Promise.all(burst.map(async (chain) => (await chain.post(), performance.now() - at)));
      p50s.push(percentile(ended, 50));
      maxes.push(Math.max(...ended));
    }
    const handBurst = { count: HAND_BURST, p50Ms: Math.round(median(p50s) * 100) / 100, maxMs: Math.round(median(maxes) * 100) / 100 };
    const afterIdle: number[] = [];
    for (let round = 0; round < 5; round++) {
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const at = performance.now();
      await poster.post();
      afterIdle.push(performance.now() - at);
    }
    const handStepAfterIdleMs = Math.round(median(afterIdle) * 100) / 100;
    for (const chain of [poster, ...chains]) chain.close();
    return { handStepMs, handStepsPerSecond, handBurst, handStepAfterIdleMs };
  } finally {
    child.removeAllListeners("exit");
    child.kill();
  }
}
