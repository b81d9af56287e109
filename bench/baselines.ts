/**
 * What the workloads are measured against, in the same run on the same machine: a loopback
 * HTTP round trip (through fetch, as a Worker's executor calls apps, and through node:http with
 * a kept-alive connection, the cheapest in Node, as the executor on Node invokes apps and the
 * SDK checkpoints), a Postgres
 * `INSERT … COMMIT` round trip over TCP (the pg driver) and through the Neon driver and the ws
 * bridge (each as an executor of that topology writes), the same on PGlite, a Redis round
 * trip (through @upstash/redis and the REST bridge), and a step done by hand: a POST from this
 * process to a bare node:http server in another process that commits one row over TCP before
 * it answers (what any executor in Node pays per checkpoint, with nothing of Stepwise in it),
 * once at a time, as many chains at once as the executor has lanes by default (W2's bound, as
 * the single one is W1's), and W3's count started in the same instant. W3 is also done by hand
 * whole (see {@link HandSleepers}): every round trip and commit twenty sleeping runs need, timed
 * as W3 times them. And the step by hand again as an invocation without checkpoints makes it,
 * carrying a run's history (W1's 1,000 / 50 row): see {@link PlainStepsByHand}.
 */
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { Agent, createServer, request } from "node:http";
import { startUpstashBridge, startWsTcpBridge } from "@stepwise/dev-bridges";
import { DEFAULT_CONCURRENCY } from "@stepwise/engine";
import { PROTOCOL_VERSION } from "@stepwise/protocol";
import { createNeonClient, createPgClient, createPgliteClient, type SqlClient } from "@stepwise/store-postgres";
import { Redis } from "@upstash/redis";
import { median, percentile, round } from "./stats.ts";

export interface Baselines {
  /** A loopback round trip through fetch (undici), as a Worker's executor calls apps. */
  httpMs: number;
  /** The same over node:http with a kept-alive connection, as the executor on Node invokes apps and the SDK sends checkpoints: the floor's HTTP part. */
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
  /** W2 done by hand: steps per second of 200 runs of 5 steps, as many at once as the executor has lanes (see {@link burstByHand}). */
  handW2StepsPerSecond: number;
  /** W3 done by hand: how late the step after the sleep starts, p50 and max of a round (median over the rounds). */
  handSleepers: HandSleepers;
  /** The step by hand carrying a run's history, as an invocation without checkpoints does. */
  plainByHand: PlainStepsByHand;
}

/**
 * W3 by hand, {@link HAND_BURST} runs started together, each on its own connection to the
 * hand-made step's server (which plays the executor: it commits, and it holds a request until
 * its `x-wake-at` to play the timer). Each run makes the round trips and commits a sleeping run
 * makes in Stepwise once it has started, nothing more: the step before (a checkpoint), the
 * sleep (the invocation's answer, which the server commits after answering, as the executor
 * does), the wake-up (at the due time the server commits and answers: the invocation reaching
 * the app, where the step after starts), the step after (a checkpoint) and the run's end
 * (answered, then committed). Lateness is measured as W3 measures it, from the step before to
 * the step after, less the 2 s. The runs' starts are left out: Stepwise commits a burst of
 * events in one statement, and twenty commits by hand would make this floor higher than it is.
 * It is a reference, not a strict lower bound: the twenty steps before start in the same
 * instant, where Stepwise's app takes its invocations in one after another (so its checkpoints
 * queue less), and nothing by hand commits two requests together.
 */
export interface HandSleepers {
  count: number;
  p50Ms: number;
  maxMs: number;
}

/**
 * The step by hand, its request an invocation carrying a run's history as one without
 * checkpoints does (W1 one invocation per step): this process stringifies the request and signs
 * it, as the executor does for every invocation, and posts it; the server checks the signature,
 * parses the body, commits one row and answers. Measured at the average history of a 50-step run
 * and of a 1,000-step run, in turn, so both see the same moments of the machine. Median ms.
 * What it leaves out is what Stepwise does with the history beyond carrying it: validating it,
 * replaying it, and keeping the run's state.
 */
export interface PlainStepsByHand {
  shortSteps: number;
  shortMs: number;
  longSteps: number;
  longMs: number;
}

const ROUNDS = 500;

/** Signs the invocations by hand (see {@link PlainStepsByHand}). */
const HISTORY_KEY = "bench-history-key";

/** The hand-made step's server: node:http and the pg driver, one INSERT per request, in a process of its own. */
const HAND_STEP_SERVER = `
import { createServer } from "node:http";
import { createHmac } from "node:crypto";
import pg from "pg";
const HISTORY_KEY = ${JSON.stringify(HISTORY_KEY)};
const client = new pg.Pool({ connectionString: process.argv[1], max: 10 });
const table = process.argv[2];
createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", async () => {
    const body = Buffer.concat(chunks).toString("utf8");
    // An invocation by hand: its signature checked, as an app checks the executor's.
    const signature = req.headers["x-signature"];
    if (signature !== undefined && createHmac("sha256", HISTORY_KEY).update(body, "utf8").digest("hex") !== signature) {
      res.writeHead(401).end();
      return;
    }
    JSON.parse(body);
    // W3 by hand: a timer of the executor's, due at this time (Date.now(), as the executor's
    // timers; one that fires early on the event loop's clock is set again, as the executor's are).
    const wakeAt = Number(req.headers["x-wake-at"] ?? 0);
    while (Date.now() < wakeAt) await new Promise((resolve) => setTimeout(resolve, wakeAt - Date.now()));
    // An app's answer to an invocation: the executor commits what it says, and nothing goes back.
    // An invocation (the executor's request to the app): nothing to commit.
    const answer = req.headers["x-answer"] === "1";
    const bare = req.headers["x-bare"] === "1";
    if (!answer && !bare) await client.query("INSERT INTO " + table + " DEFAULT VALUES");
    res.writeHead(200, { "content-type": "application/json", "content-length": 11 });
    res.end('{"ok":true}');
    if (answer) await client.query("INSERT INTO " + table + " DEFAULT VALUES");
  });
}).listen(0, "127.0.0.1", function () { console.log(this.address().port); });
`;

/** A request built anew for each POST (as the executor builds each invocation), with headers of its own. */
type Built = () => { body: string; headers: Record<string, string> };

/** Kept-alive POSTs of `body` to `port` over node:http: the cheapest HTTP there is in Node. */
function nodePoster(port: number, body: string | Built) {
  const agent = new Agent({ keepAlive: true });
  const post = (headers: Record<string, string> = {}) =>
    new Promise<void>((resolve, reject) => {
      const built = typeof body === "string" ? { body, headers: {} } : body();
      const length = Buffer.byteLength(built.body);
      const req = request(`http://127.0.0.1:${port}/`, { method: "POST", agent, headers: { ...headers, ...built.headers, "content-length": length } }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`the hand-made step's server answered ${res.statusCode}`));
        res.resume();
        res.on("end", () => resolve());
      });
      req.on("error", reject);
      req.end(built.body);
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
  const { handStepMs, handStepsPerSecond, handBurst, handStepAfterIdleMs, handSleepers, handW2StepsPerSecond, plainByHand } = await measureHandSteps(table);

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

  return { httpMs, httpNodeMs, postgresCommitMs, postgresTcpCommitMs, pgliteCommitMs, redisMs, handStepMs, handStepsPerSecond, handBurst, handStepAfterIdleMs, handW2StepsPerSecond, handSleepers, plainByHand };
}

/** Chains of steps by hand going at once, as the executor's lanes do in W2. */
export const HAND_CHAINS = DEFAULT_CONCURRENCY;
/** Steps in all, as in W2's 200 runs of 5 steps and then some. */
const HAND_STEPS = 4_000;
/** Steps by hand started together, as W3's timers come due together. */
export const HAND_BURST = 20;
const HAND_BURST_ROUNDS = 20;

/** The hand-made step's server in a process of its own, committing into `table`. */
async function startHandServer(table: string): Promise<{ port: number; close: () => void }> {
  const child = spawn(process.execPath, ["--input-type=module", "-e", HAND_STEP_SERVER, "postgres://postgres@127.0.0.1:5432/test", table], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once("data", (chunk) => resolve(Number(String(chunk).trim())));
    child.once("exit", (code) => reject(new Error(`the hand-made step's server exited (${code})`)));
  });
  return {
    port,
    close: () => {
      child.removeAllListeners("exit");
      child.kill();
    },
  };
}

/** About what a checkpoint carries: the run, the lease token, the step and a small output. */
const CHECKPOINT_BODY = JSON.stringify({ run: { id: "01KBENCH", appId: "bench", functionId: "sequence" }, token: "1.1.executor-x", step: { id: "s1", name: "s1", position: 1, output: 1, durationMs: 0 } });

/** W2 by hand on call, to be measured in turn with Stepwise's W2 (see `w2Steady`). */
export interface W2ByHand {
  /** One W2 burst by hand on fresh kept-alive connections, each opened first: steps per second. */
  burst(): Promise<number>;
  close(): Promise<void>;
}

/**
 * Starts the hand-made step's server for W2 by hand in turn with Stepwise's own W2: the same
 * moments of a shared machine, where the W2 by hand in the baselines ran minutes before. Its
 * connections are opened for each burst (an idle one would meet the server's keep-alive
 * timeout between topologies) and warmed by one request each before the clock starts.
 */
export async function startW2ByHand(): Promise<W2ByHand> {
  const table = `stepwise_bench_hand_w2_${process.pid}`;
  const admin = createPgClient({ connectionString: "postgres://postgres@127.0.0.1:5432/test", max: 1 });
  await admin.query(`CREATE TABLE IF NOT EXISTS ${table} (id serial, at timestamptz DEFAULT now())`);
  const server = await startHandServer(table);
  return {
    async burst() {
      const chains = Array.from({ length: HAND_CHAINS }, () => nodePoster(server.port, CHECKPOINT_BODY));
      try {
        await Promise.all(chains.map((chain) => chain.post({ "x-bare": "1" })));
        return await oneBurstByHand(chains);
      } finally {
        for (const chain of chains) chain.close();
      }
    },
    async close() {
      server.close();
      await admin.query(`DROP TABLE IF EXISTS ${table}`);
      await admin.close();
    },
  };
}

async function measureHandSteps(
  table: string,
): Promise<Pick<Baselines, "handStepMs" | "handStepsPerSecond" | "handBurst" | "handStepAfterIdleMs" | "handSleepers" | "handW2StepsPerSecond" | "plainByHand">> {
  const server = await startHandServer(table);
  try {
    const poster = nodePoster(server.port, CHECKPOINT_BODY);
    const handStepMs = await timeEach(ROUNDS, poster.post);
    const plainByHand = await measurePlainByHand(server.port);
    // One connection per chain (as an app's invocations each send their own checkpoints).
    const chains = Array.from({ length: HAND_CHAINS }, () => nodePoster(server.port, CHECKPOINT_BODY));
    await Promise.all(chains.map(async (chain) => { for (let i = 0; i < 20; i++) await chain.post(); }));
    const start = performance.now();
    const perChain = Math.ceil(HAND_STEPS / HAND_CHAINS);
    await Promise.all(chains.map(async (chain) => { for (let i = 0; i < perChain; i++) await chain.post(); }));
    const handStepsPerSecond = Math.round((HAND_CHAINS * perChain) / ((performance.now() - start) / 1000));
    const handW2StepsPerSecond = await burstByHand(chains);
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
    const handBurst = { count: HAND_BURST, p50Ms: round(median(p50s)), maxMs: round(median(maxes)) };
    // Only W3's connections stay open: the others would be closed by the server's keep-alive
    // timeout in the middle of a round.
    for (const chain of chains.slice(HAND_BURST)) chain.close();
    const handSleepers = await sleepByHand(burst);
    const afterIdle: number[] = [];
    for (let round = 0; round < 5; round++) {
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const at = performance.now();
      await poster.post();
      afterIdle.push(performance.now() - at);
    }
    const handStepAfterIdleMs = round(median(afterIdle));
    for (const chain of [poster, ...burst]) chain.close();
    return { handStepMs, handStepsPerSecond, handBurst, handStepAfterIdleMs, handSleepers, handW2StepsPerSecond, plainByHand };
  } finally {
    server.close();
  }
}

/** W2's runs and steps. */
const W2_RUNS = 200;
const W2_STEPS = 5;

/**
 * W2 by hand: {@link W2_RUNS} runs of {@link W2_STEPS} steps, one chain per lane, each run
 * making the round trips and commits a W2 run makes in Stepwise once its event is stored (a
 * burst's events are one commit): its invocation (a request with nothing to commit), a
 * checkpoint per step (a request and a commit) and its end (the invocation's answer: answered,
 * then committed). Steps per second, the median of three bursts after one to warm up.
 */
async function burstByHand(chains: Array<ReturnType<typeof nodePoster>>): Promise<number> {
  const rates: number[] = [];
  // The first warms the server up, as W2's warm-up runs do.
  for (let burst = 0; burst < 4; burst++) {
    const rate = await oneBurstByHand(chains);
    if (burst > 0) rates.push(rate);
  }
  return Math.round(median(rates));
}

/** One burst of W2 by hand: steps per second. */
async function oneBurstByHand(chains: Array<ReturnType<typeof nodePoster>>): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    chains.map(async (chain) => {
      while (next < W2_RUNS) {
        next++;
        await chain.post({ "x-bare": "1" }); // the run's invocation reaches the app
        for (let step = 0; step < W2_STEPS; step++) await chain.post(); // a step and its checkpoint
        await chain.post({ "x-answer": "1" }); // the run's end
      }
    }),
  );
  return Math.round((W2_RUNS * W2_STEPS) / ((performance.now() - start) / 1000));
}

/** Rounds of W3 by hand (see {@link HandSleepers}); W3 is taken in as many (`W3_ROUNDS`). */
const HAND_SLEEP_ROUNDS = 3;
const SLEEP_MS = 2_000;

async function sleepByHand(runs: Array<ReturnType<typeof nodePoster>>): Promise<HandSleepers> {
  const p50s: number[] = [];
  const maxes: number[] = [];
  for (let round = 0; round < HAND_SLEEP_ROUNDS; round++) {
    // Apart from the last round's commits (the server commits an answer after replying).
    await new Promise((resolve) => setTimeout(resolve, 500));
    const late = await Promise.all(
      runs.map(async (run) => {
        const before = performance.now(); // the step before runs
        await run.post(); // its checkpoint
        // The function reaches the sleep: due in 2 s, on the clock both processes share (as W3's
        // step before and step after, which read Date.now() in the app).
        const wakeAt = Date.now() + SLEEP_MS;
        await run.post({ "x-answer": "1" }); // the invocation's answer, the sleep, committed
        await run.post({ "x-wake-at": String(wakeAt) }); // the wake-up committed at the due time, the invocation
        const ms = performance.now() - before - SLEEP_MS; // the step after starts
        await run.post(); // its checkpoint
        await run.post({ "x-answer": "1" }); // the run's end: the invocation's answer, committed
        return ms;
      }),
    );
    p50s.push(percentile(late, 50));
    maxes.push(Math.max(...late));
  }
  return { count: runs.length, p50Ms: round(median(p50s)), maxMs: round(median(maxes)) };
}

/** Steps a run of 50 and one of 1,000 have stored at the average invocation without checkpoints. */
const SHORT_HISTORY = 25;
const LONG_HISTORY = 500;

async function measurePlainByHand(port: number): Promise<PlainStepsByHand> {
  const event = { id: "01KBENCH", name: "bench/sequence-plain", data: { steps: 1_000 }, ts: Date.now() };
  const invocation = (stored: number): Built => {
    // What the executor sends the bench's app: every stored step with its output (W1's steps
    // return their index), in the compact form its SDK declares it reads.
    const request = {
      version: PROTOCOL_VERSION,
      run: { id: "01KBENCH", appId: "bench", functionId: "sequence-plain", attempt: 0 },
      event,
      events: [event],
      steps: Array.from({ length: stored }, (_, i) => ({ id: `s${i}`, output: i })),
    };
    return () => {
      const body = JSON.stringify(request);
      return { body, headers: { "x-signature": createHmac("sha256", HISTORY_KEY).update(body, "utf8").digest("hex") } };
    };
  };
  const short = nodePoster(port, invocation(SHORT_HISTORY));
  const long = nodePoster(port, invocation(LONG_HISTORY));
  try {
    for (let i = 0; i < 50; i++) {
      await short.post();
      await long.post();
    }
    const shortSamples: number[] = [];
    const longSamples: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      for (const [poster, samples] of [[short, shortSamples], [long, longSamples]] as const) {
        const start = performance.now();
        await poster.post();
        samples.push(performance.now() - start);
      }
    }
    return { shortSteps: SHORT_HISTORY, shortMs: round(median(shortSamples), 3), longSteps: LONG_HISTORY, longMs: round(median(longSamples), 3) };
  } finally {
    short.close();
    long.close();
  }
}
