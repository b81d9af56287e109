import { createPgliteClient, PostgresStore } from "@stepwise/store-postgres";
import { Redis } from "@upstash/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, postgresAvailable } from "../../../test/support/postgres.ts";
import { redisAvailable, startTestRedis, type TestRedis } from "../../../test/support/redis.ts";
import { testQueue } from "../../store-postgres/test/store-contract.ts";
import { RedisQueue } from "../src/index.ts";

describe.runIf(redisAvailable)("Redis queue through @upstash/redis and the bridge", () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startTestRedis("queue");
  });
  afterAll(async () => redis?.close());

  const queueFor = (suffix: string) => new RedisQueue({ url: redis.url, token: redis.token, prefix: `${redis.prefix}${suffix}:` });

  testQueue("Redis queue, record in PGlite", async () => {
    const store = new PostgresStore(createPgliteClient(), { queue: queueFor("pglite") });
    return { store, cleanup: () => store.close() };
  });

  describe.runIf(postgresAvailable)("with the record in PostgreSQL", () => {
    testQueue("Redis queue, record in PostgreSQL", async () => {
      const db = await createTestDatabase("rq");
      const store = new PostgresStore(db.client(), { queue: queueFor("pg") });
      return { store, cleanup: () => db.drop() };
    });
  });

  describe("rebuilding from the record", () => {
    let store: PostgresStore;
    let prefix: string;
    beforeAll(async () => {
      prefix = `${redis.prefix}rebuild:`;
      store = new PostgresStore(createPgliteClient(), { queue: new RedisQueue({ url: redis.url, token: redis.token, prefix, reconcileGraceMs: 0 }) });
      await store.migrate();
    });
    afterAll(async () => store?.close());

    const wipeRedis = async () => {
      const client = new Redis({ url: redis.url, token: redis.token });
      const keys = await client.keys(`${prefix}*`);
      if (keys.length > 0) await client.del(...keys);
    };

    it("re-adds every job Redis lost, and leaves the ones it knows alone", async () => {
      const jobs = await store.transaction((tx) =>
        tx.enqueue([
          { kind: "invoke", runId: "r1" },
          { kind: "wake", runId: "r2", stepId: "nap", runAt: new Date(Date.now() + 60_000) },
        ]),
      );
      await store.queue.publish(jobs);
      await wipeRedis();
      expect(await store.queue.claim("w", 10, 10_000)).toEqual([]);
      expect(await store.queue.reconcile(store)).toBe(2);
      expect(await store.queue.reconcile(store)).toBe(0);
      const claimed = await store.queue.claim("w", 10, 120_000);
      expect(claimed.map((j) => [j.id, j.kind, j.runId])).toEqual([[jobs[0]!.id, "invoke", "r1"]]);
      // The earliest thing due is now the wake-up (the claimed job's lease runs longer).
      const next = await store.queue.nextDueAt();
      expect(Math.abs(next!.getTime() - jobs[1]!.runAt.getTime())).toBeLessThan(1_000);
    });

    it("a claim of a job whose completion already committed is recognisable: the record no longer has it", async () => {
      const [job] = await store.transaction((tx) => tx.enqueue([{ kind: "invoke", runId: "r3" }]));
      await store.queue.publish([job!]);
      expect(await store.transaction((tx) => tx.completeJob(job!.id, "anyone"))).toBe(true);
      // The executor died before forgetting it in Redis: another worker claims it...
      const [stale] = (await store.queue.claim("w2", 10, 10_000)).filter((j) => j.id === job!.id);
      expect(stale).toBeDefined();
      // ...and the engine checks the record before invoking anything.
      expect(await store.jobExists(job!.id)).toBe(false);
      await store.queue.forget(job!.id);
      expect((await store.queue.claim("w3", 10, 10_000)).map((j) => j.id)).not.toContain(job!.id);
    });
  });
});
