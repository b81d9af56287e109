import { PostgresStore } from "@stepwise/store-postgres";
import { Redis } from "@upstash/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshPglite } from "../../../test/support/pglite.ts";
import { createTestDatabase, postgresAvailable } from "../../../test/support/postgres.ts";
import { redisAvailable, startTestRedis, type TestRedis } from "../../../test/support/redis.ts";
import { emptyChange, seedRun, testQueue } from "../../store-postgres/test/store-contract.ts";
import { RedisQueue } from "../src/index.ts";

describe.runIf(redisAvailable)("Redis ready queue through @upstash/redis and the bridge", () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startTestRedis("queue");
  });
  afterAll(async () => redis?.close());

  const readyQueue = (suffix: string) => new RedisQueue({ url: redis.url, token: redis.token, prefix: `${redis.prefix}${suffix}:` });

  testQueue("Redis queue, record in PGlite", async () => {
    const store = new PostgresStore(await freshPglite(), { readyQueue: readyQueue("pglite"), reconcileGraceMs: 0 });
    return { store, cleanup: () => store.close() };
  });

  describe.runIf(postgresAvailable)("with the record in PostgreSQL", () => {
    testQueue("Redis queue, record in PostgreSQL", async () => {
      const db = await createTestDatabase("rq");
      const store = new PostgresStore(db.client(), { readyQueue: readyQueue("pg"), reconcileGraceMs: 0 });
      return { store, cleanup: () => db.drop() };
    });
  });

  describe("the record decides", () => {
    let store: PostgresStore;
    let prefix: string;
    beforeAll(async () => {
      prefix = `${redis.prefix}rebuild:`;
      store = new PostgresStore(await freshPglite(), { readyQueue: new RedisQueue({ url: redis.url, token: redis.token, prefix }), reconcileGraceMs: 0 });
      await store.migrate();
    });
    afterAll(async () => store?.close());

    const wipeRedis = async () => {
      const client = new Redis({ url: redis.url, token: redis.token });
      const keys = await client.keys(`${prefix}*`);
      if (keys.length > 0) await client.del(...keys);
    };
    const drain = async () => {
      while ((await store.queue.claim("drain", 100, 3_600_000)).length > 0);
    };

    it("re-adds every free job Redis lost, and leaves the ones it knows alone", async () => {
      await drain();
      const { jobs } = await seedRun(store, [{ kind: "invoke" }, { kind: "wake", stepId: "nap", delayMs: 60_000 }]);
      await wipeRedis();
      expect(await store.queue.claim("w", 10, 10_000)).toEqual([]);
      expect(await store.queue.reconcile()).toBe(2);
      expect(await store.queue.reconcile()).toBe(0);
      const claimed = await store.queue.claim("w", 10, 120_000);
      expect(claimed.map((j) => j.id)).toEqual([jobs[0]!.id]);
      // The earliest thing due is now the wake-up (the claimed job's lease runs longer).
      const next = await store.queue.nextDueIn();
      expect(next).toBeGreaterThan(50_000);
    });

    it("drops a job Redis still lists after its completion committed, without running it", async () => {
      await drain();
      const { jobs } = await seedRun(store, [{ kind: "invoke" }]);
      const [job] = await store.queue.claim("w1", 10, 10_000);
      expect(job?.id).toBe(jobs[0]!.id);
      // The completion commits; the executor dies before it tells Redis (no afterCommit).
      expect(await store.transaction((tx) => tx.completeJob({ jobId: job!.id, owner: "w1" }))).not.toBeNull();
      const index = (store.queue as unknown as { index: RedisQueue }).index;
      await index.publish([job!]); // Redis lists it as due again...
      expect(await store.queue.claim("w2", 10, 10_000)).toEqual([]); // ...but the record has no such job
      expect(await index.claim("w3", 10, 10_000)).toEqual([]); // and Redis has forgotten it
    });

    it("tells Redis of deleted jobs in the background: the commit's caller never waits, a burst goes in one call, settled() waits", async () => {
      await drain();
      const seeded = await Promise.all([1, 2, 3].map(() => seedRun(store, [{ kind: "invoke" }])));
      const ids = seeded.map(({ jobs }) => jobs[0]!.id);
      const claimed = await store.queue.claim("w1", 10, 60_000);
      expect(claimed.map((job) => job.id).sort()).toEqual([...ids].sort());
      for (const id of ids) expect(await store.transaction((tx) => tx.completeJob({ jobId: id, owner: "w1" }))).not.toBeNull();
      const index = (store.queue as unknown as { index: RedisQueue }).index;
      const client = new Redis({ url: redis.url, token: redis.token });
      const held = async () => Promise.all(ids.map((id) => client.exists(`${prefix}job:${id}`)));
      // Redis answers slowly.
      const forget = index.forget.bind(index);
      const calls: string[][] = [];
      let answer!: () => void;
      const slow = new Promise<void>((resolve) => (answer = resolve));
      index.forget = async (jobIds) => {
        calls.push(jobIds);
        await slow;
        return forget(jobIds);
      };
      try {
        for (const id of ids) {
          const told = store.queue.afterCommit({ queued: [], deleted: [id] });
          expect(await Promise.race([told.then(() => "returned"), sleep(200).then(() => "waited")])).toBe("returned");
        }
        const settled = store.queue.settled!();
        expect(await Promise.race([settled.then(() => "settled"), sleep(200).then(() => "pending")])).toBe("pending");
        expect(await held()).toEqual([1, 1, 1]);
        answer();
        await settled;
        // The first deletion went alone; the two told while it was on its way, together.
        expect(calls).toEqual([[ids[0]], [ids[1], ids[2]]]);
        expect(await held()).toEqual([0, 0, 0]);
      } finally {
        answer();
        index.forget = forget;
      }
    });

    it("claims again the places jobs deleted in the record took while Redis had not heard yet", async () => {
      await drain();
      // Due jobs of runs cancelled before the live ones were queued: Redis hands them out first.
      const doomed = [];
      for (let i = 0; i < 8; i++) doomed.push(await seedRun(store, [{ kind: "invoke" }]));
      await sleep(20);
      const live = [];
      for (let i = 0; i < 4; i++) live.push(await seedRun(store, [{ kind: "invoke" }]));
      const deleted: string[] = [];
      for (const { run } of doomed) {
        const written = await store.transaction(async (tx) => {
          const state = (await tx.lockRun(run.id))!;
          return tx.writeChange(run.id, state.run.version, emptyChange({ run: { status: "cancelled", endedAt: new Date() }, dropJobs: "all" }));
        });
        deleted.push(...written.deleted);
      }
      // The deletions have not reached Redis when the claim comes: the call telling them takes 300 ms.
      const index = (store.queue as unknown as { index: RedisQueue }).index;
      const forget = index.forget.bind(index);
      const told = new Set(deleted);
      index.forget = async (jobIds) => {
        if (jobIds.some((id) => told.has(id))) await sleep(300);
        return forget(jobIds);
      };
      try {
        await store.queue.afterCommit({ queued: [], deleted });
        // Room for 5: Redis's first 5 are all gone; once the deletions land, the claim takes the live ones behind them.
        const claimed = await store.queue.claim("w", 5, 3_600_000);
        expect(claimed.map((job) => job.id).sort()).toEqual(live.map(({ jobs }) => jobs[0]!.id).sort());
      } finally {
        index.forget = forget;
      }
      await store.queue.settled!();
    });

    it("hands over the jobs it leased even when Redis refuses to forget the gone ones beside them", async () => {
      await drain();
      const gone = await seedRun(store, [{ kind: "invoke" }]);
      await sleep(20);
      const live = await seedRun(store, [{ kind: "invoke" }]);
      // Deleted in the record; the executor died before telling Redis.
      await store.transaction(async (tx) => {
        const state = (await tx.lockRun(gone.run.id))!;
        return tx.writeChange(gone.run.id, state.run.version, emptyChange({ run: { status: "cancelled", endedAt: new Date() }, dropJobs: "all" }));
      });
      const index = (store.queue as unknown as { index: RedisQueue }).index;
      const forget = index.forget.bind(index);
      index.forget = () => Promise.reject(new Error("Redis refused the script"));
      try {
        // The live job is leased in the record by this claim: it must reach the caller, not wait out its lease.
        expect((await store.queue.claim("w", 5, 3_600_000)).map((job) => job.id)).toEqual([live.jobs[0]!.id]);
      } finally {
        index.forget = forget;
      }
    });

    it("closes once Redis has heard of the deletions still on their way, waiting a second at most", async () => {
      const client = new Redis({ url: redis.url, token: redis.token });
      const closing = async (answerMs: number | null, settleMs?: number) => {
        const ownPrefix = `${redis.prefix}close-${answerMs}-${settleMs}:`;
        const index = new RedisQueue({ url: redis.url, token: redis.token, prefix: ownPrefix });
        const own = new PostgresStore(await freshPglite(), { readyQueue: index, reconcileGraceMs: 0 });
        await seedRun(own, [{ kind: "invoke" }]);
        const [job] = await own.queue.claim("w", 1, 60_000);
        expect(await own.transaction((tx) => tx.completeJob({ jobId: job!.id, owner: "w" }))).not.toBeNull();
        const forget = index.forget.bind(index);
        // Redis answers after `answerMs`, or never.
        index.forget = async (ids) => (answerMs === null ? new Promise<void>(() => {}) : sleep(answerMs).then(() => forget(ids)));
        await own.queue.afterCommit({ queued: [], deleted: [job!.id] });
        const started = Date.now();
        await own.close(settleMs === undefined ? undefined : { settleMs });
        return { tookMs: Date.now() - started, held: await client.exists(`${ownPrefix}job:${job!.id}`) };
      };
      const slow = await closing(300);
      expect(slow.held).toBe(0);
      expect(slow.tookMs).toBeGreaterThanOrEqual(250);
      const silent = await closing(null);
      expect(silent.held).toBe(1);
      expect(silent.tookMs).toBeGreaterThanOrEqual(900);
      expect(silent.tookMs).toBeLessThan(5_000);
      // A server whose grace period is spent (its executor's stop waited already) closes at once.
      const spent = await closing(null, 0);
      expect(spent.held).toBe(1);
      expect(spent.tookMs).toBeLessThan(500);
    });

    it("says in the log when Redis did not take deletions, once a minute at most, with how many", async () => {
      const lines: string[] = [];
      const index = new RedisQueue({ url: redis.url, token: redis.token, prefix: `${redis.prefix}untold:` });
      const own = new PostgresStore(await freshPglite(), { readyQueue: index, reconcileGraceMs: 0, warn: (line) => lines.push(line) });
      try {
        index.forget = () => Promise.reject(new Error("Redis refused the script"));
        await own.queue.afterCommit({ queued: [], deleted: ["1", "2"] });
        await own.queue.settled?.();
        expect(lines).toEqual(["could not tell Redis of 2 deleted job(s) (Redis refused the script); a claim that meets them drops them"]);
        await own.queue.afterCommit({ queued: [], deleted: ["3"] });
        await own.queue.settled?.();
        expect(lines).toHaveLength(1);
      } finally {
        await own.close({ settleMs: 0 });
      }
    });

    it("never hands out a job whose lease in the record is held, even when Redis lost its own lease", async () => {
      await drain();
      const { jobs } = await seedRun(store, [{ kind: "invoke" }]);
      const [held] = await store.queue.claim("holder", 1, 60_000);
      expect(held?.id).toBe(jobs[0]!.id);
      // Redis forgets everything (a flush); reconcile must not re-add a job its worker still holds.
      await wipeRedis();
      await store.queue.reconcile();
      expect(await store.queue.claim("thief", 10, 10_000)).toEqual([]);
      // Even a stale Redis entry (its own lease ran out) cannot take it from the record's holder.
      await (store.queue as unknown as { index: RedisQueue }).index.publish([held!]);
      expect(await store.queue.claim("thief", 10, 10_000)).toEqual([]);
      // The holder's commit still goes through: its lease in the record is the fence.
      const written = await store.applyOptimistically((await store.loadRunState(held!.runId))!, { jobId: held!.id, owner: "holder" }, emptyChange({ run: { status: "running" } }));
      expect(written?.deleted).toEqual([held!.id]);
    });

    it("a job Redis hands out before the record says it is due goes back for the time it has left, once", async () => {
      await drain();
      const { jobs } = await seedRun(store, [{ kind: "wake", stepId: "soon", delayMs: 800 }]);
      const index = (store.queue as unknown as { index: RedisQueue }).index;
      // As if Redis's clock ran ahead of the database's: it lists the job as due already.
      await index.publish([{ ...jobs[0]!, runAt: new Date(Date.now() - 60_000) }]);
      expect(await store.queue.claim("w", 10, 10_000)).toEqual([]);
      // Not handed out again at once (no claim loop while the clocks disagree)...
      expect(await index.claim("w", 10, 10_000)).toEqual([]);
      expect(await store.queue.nextDueIn()).toBeGreaterThan(400);
      // ...but when the record's time has come.
      await new Promise((r) => setTimeout(r, 900));
      expect((await store.queue.claim("w", 10, 10_000)).map((j) => j.id)).toEqual([jobs[0]!.id]);
    });

    it("claims keyed and plain work side by side, never more than asked for: Redis's surplus goes back and comes next", async () => {
      await drain();
      const key = `side-by-side-${Date.now()}`;
      const keyed = await Promise.all([1, 2].map(async () => (await seedRun(store, [{ kind: "invoke", concurrency: [{ key, limit: 5 }] }])).jobs[0]!));
      const plain = await Promise.all([1, 2, 3].map(async () => (await seedRun(store, [{ kind: "invoke" }])).jobs[0]!));
      // Room for 3: both keyed jobs, and one of the plain ones Redis handed out; the other two go back.
      const first = await store.queue.claim("w", 3, 60_000);
      expect(first).toHaveLength(3);
      expect(first.filter((job) => job.concurrency).map((job) => job.id).sort()).toEqual(keyed.map((job) => job.id).sort());
      const second = await store.queue.claim("w", 10, 60_000);
      const plainIds = plain.map((job) => job.id).sort();
      expect([...first, ...second].filter((job) => !job.concurrency).map((job) => job.id).sort()).toEqual(plainIds);
      expect(second).toHaveLength(2);
    });

    it("keeps the record's lease alive when extending it in Redis fails", async () => {
      const real = new RedisQueue({ url: redis.url, token: redis.token, prefix: `${redis.prefix}flaky:` });
      // Redis answers everything but the heartbeat.
      const flaky = Object.assign(Object.create(real) as RedisQueue, {
        extendLeases: async () => {
          throw new Error("Redis unreachable");
        },
      });
      const faulty = new PostgresStore(await freshPglite(), { readyQueue: flaky, reconcileGraceMs: 0 });
      await faulty.migrate();
      const { jobs } = await seedRun(faulty, [{ kind: "invoke" }]);
      const [job] = await faulty.queue.claim("w", 1, 300);
      expect(job?.id).toBe(jobs[0]!.id);
      await faulty.queue.extendLeases([job!.id], "w", 60_000);
      await new Promise((r) => setTimeout(r, 500));
      // Redis's own lease ran out and it hands the job out again; the record still says "w".
      expect(await faulty.queue.claim("other", 10, 10_000)).toEqual([]);
      expect(await faulty.transaction((tx) => tx.completeJob({ jobId: job!.id, owner: "w" }))).not.toBeNull();
      await faulty.close();
    });
  });
});

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
