/**
 * Redis loses everything in the middle of a load (FLUSHDB on the queue's database): runs only
 * pause. The executors re-add every job from Postgres, the record, and every run completes.
 */
import { Stepwise } from "@stepwise/sdk";
import { Redis } from "@upstash/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { Cluster } from "../support/cluster.ts";
import { postgresAvailable } from "../support/postgres.ts";
import { redisAvailable } from "../support/redis.ts";

const RUNS = 100;
const client = new Stepwise({ id: "flush", signingKey: "cluster-signing-key", schemas: { "flush/go": z.object({ n: z.number() }) } });
const fn = client.createFunction({ id: "sleepy", triggers: [{ event: "flush/go" }] }, async ({ event, step }) => {
  const a = await step.run("before", async () => {
    await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 40));
    return event.data.n;
  });
  await step.sleep("nap", 500 + Math.floor(Math.random() * 1_500));
  return step.run("after", () => a * 2);
});

describe.runIf(postgresAvailable && redisAvailable)("Redis flushed mid-load", () => {
  // Database 3 of the local Redis belongs to this suite alone, so flushing it touches no one else.
  const cluster = new Cluster({
    client,
    functions: [fn],
    executors: 2,
    redisDb: 3,
    env: { STEPWISE_CONCURRENCY: "8", STEPWISE_MAINTENANCE_MS: "1000", STEPWISE_RECONCILE_GRACE_MS: "500" },
  });
  beforeAll(async () => cluster.start(), 120_000);
  afterAll(async () => cluster.stop(), 60_000);

  it("every run still completes", { timeout: 120_000 }, async () => {
    const sql = cluster.db!.client();
    await cluster.send(Array.from({ length: RUNS }, (_, n) => ({ name: "flush/go", data: { n } })));
    const count = async (status: string) =>
      (await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM runs WHERE status = $1", [status]))[0]!.n;
    // Flush while runs sleep (timers in Redis) and others run (leases and due jobs in Redis).
    while ((await count("sleeping")) < 20) await new Promise((resolve) => setTimeout(resolve, 20));
    const redis = new Redis({ url: cluster.redis!.url, token: cluster.redis!.token });
    expect(await redis.dbsize()).toBeGreaterThan(0);
    await redis.flushdb();
    const completedAtFlush = await count("completed");
    expect(completedAtFlush).toBeLessThan(RUNS);

    const deadline = Date.now() + 90_000;
    while ((await count("completed")) < RUNS && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await count("completed"), cluster.logs().slice(-4_000)).toBe(RUNS);
    expect(cluster.logs()).toMatch(/queue had lost \d+ job\(s\); re-added them from the record/);
    const outputs = await sql.query<{ ok: boolean }>(
      "SELECT bool_and(r.output::jsonb = to_jsonb((e.data::jsonb->>'n')::int * 2)) AS ok FROM runs r JOIN events e ON e.id = r.event_id",
    );
    expect(outputs[0]!.ok).toBe(true);
  });
});
