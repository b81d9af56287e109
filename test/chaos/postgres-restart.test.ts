/**
 * PostgreSQL restarts in the middle of a load. The executors (Postgres + Redis topology) lose
 * every connection, log one clear line each, retry with backoff, and every run completes.
 * The server is a private one (its own data folder and port), so other suites are untouched.
 */
import { startWsTcpBridge, type WsTcpBridge } from "@stepwise/dev-bridges";
import { Stepwise } from "@stepwise/sdk";
import { createNeonClient } from "@stepwise/store-postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { Cluster } from "../support/cluster.ts";
import { freePort } from "../support/net.ts";
import { redisAvailable } from "../support/redis.ts";
import { scratchPostgresAvailable, startScratchPostgres, type ScratchPostgres } from "../support/scratch-postgres.ts";

const RUNS = 60;
const client = new Stepwise({ id: "restart", signingKey: "cluster-signing-key", schemas: { "restart/go": z.object({ n: z.number() }) } });
const fn = client.createFunction({ id: "steady", triggers: [{ event: "restart/go" }], retries: 10 }, async ({ event, step }) => {
  let sum = 0;
  for (let i = 0; i < 5; i++) {
    sum += await step.run(`s${i}`, async () => {
      await new Promise((resolve) => setTimeout(resolve, 30 + Math.random() * 50));
      return event.data.n + i;
    });
  }
  return sum;
});

describe.runIf(redisAvailable && scratchPostgresAvailable())("PostgreSQL restarted mid-load", () => {
  let pg: ScratchPostgres;
  let bridge: WsTcpBridge;
  let cluster: Cluster;

  beforeAll(async () => {
    pg = startScratchPostgres(await freePort());
    bridge = await startWsTcpBridge({ allowedTargets: [`127.0.0.1:${pg.port}`] });
    cluster = new Cluster({
      client,
      functions: [fn],
      executors: 2,
      redisDb: 0,
      databaseUrl: pg.url,
      wsProxy: `127.0.0.1:${bridge.port}/v2`,
      env: { STEPWISE_CONCURRENCY: "6", STEPWISE_MAINTENANCE_MS: "1000" },
    });
    await cluster.start();
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    await bridge?.close();
    pg?.stop();
  }, 60_000);

  it("every run completes, and each executor says once that the store was down", { timeout: 150_000 }, async () => {
    const sql = createNeonClient({ connectionString: pg.url, wsProxy: bridge.wsProxy, onError: () => {} });
    const completed = async () =>
      (await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM runs WHERE status = 'completed'"))[0]!.n;
    await cluster.send(Array.from({ length: RUNS }, (_, n) => ({ name: "restart/go", data: { n } })));
    while ((await completed()) < 10) await new Promise((resolve) => setTimeout(resolve, 50));

    await pg.restart(3_000);

    const deadline = Date.now() + 120_000;
    let done = 0;
    while (Date.now() < deadline) {
      done = await completed().catch(() => 0);
      if (done === RUNS) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    await sql.close();
    expect(done, cluster.logs().slice(-4_000)).toBe(RUNS);
    const outageLines = cluster.executors.map((e) => e.output.join("").match(/store unavailable/g)?.length ?? 0);
    expect(outageLines.some((n) => n >= 1), cluster.logs()).toBe(true);
    // One line per outage; a second only if the first reconnect caught the server still starting.
    for (const n of outageLines) expect(n).toBeLessThanOrEqual(2);
    expect(cluster.logs()).toMatch(/store reachable again after/);
    console.log(cluster.logs().split("\n").filter((line) => /store|executor \d/.test(line)).join("\n"));
  });
});
