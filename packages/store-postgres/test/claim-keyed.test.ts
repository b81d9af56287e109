/**
 * The keyed claim and the notices of freed slots beside other transactions, on real PostgreSQL
 * (PGlite has one connection: nothing there is held by another).
 */
import { describe, expect, it } from "vitest";
import { postgresAvailable } from "../../../test/support/postgres.ts";
import { signal, whileHeld } from "../../../test/support/signal.ts";
import { suiteDatabase } from "../../../test/support/suite-database.ts";
import { pruneKeys } from "../src/concurrency-claim.ts";
import { PgQueue } from "../src/queue.ts";
import { emptyChange, seedRun } from "./store-contract.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.runIf(postgresAvailable)("keyed claims and freed slots beside other transactions (real PostgreSQL)", () => {
  const suite = suiteDatabase("claimkeyed");
  const slot = (key: string, limit = 5) => [{ key, limit }];
  /** A live run with nothing queued, to queue invocations of inside a transaction a test holds. */
  const liveRun = async () => (await seedRun(suite.store)).run;

  it("claims a key's waiting invocations while a commit that queues another of that key is still open", async () => {
    const key = "fn:hot:k";
    const waiting = (await seedRun(suite.store, [{ kind: "invoke", concurrency: slot(key) }])).jobs[0]!;
    const run = await liveRun();
    // An event's transaction, say, under heavy ingest: it queued a job of the key and goes on.
    const claimed = await whileHeld(
      (hold) =>
        suite.store.transaction(async (tx) => {
          await tx.writeChange(run.id, run.version, emptyChange({ jobs: [{ kind: "invoke", runId: run.id, concurrency: slot(key) }] }));
          await hold();
        }),
      () => suite.store.queue.claim("worker-a", 10, 30_000),
    );
    expect(claimed.map((job) => job.id)).toEqual([waiting.id]);
    // Once it commits, its job is claimed as well.
    expect((await suite.store.queue.claim("worker-a", 10, 30_000)).map((job) => job.runId)).toEqual([run.id]);
  });

  it("two commits queueing invocations of the same keys in opposite orders both commit", async () => {
    const [one, two] = [await liveRun(), await liveRun()];
    const other = suite.db.store();
    // A deadlock would abort one of them, which the store then runs again: a third attempt.
    let attempts = 0;
    // Writes done so far: the n-th write (from 1) waits for the n - 1 before it, except that the
    // last two are sent together (the old way, each then waited for the other's key).
    let done = 0;
    const turn = async (n: number) => {
      while (done < Math.min(n, 3) - 1) await sleep(5);
    };
    // Each queues a job of one key, then (after the other did the same) one of the other key.
    const queue = (store: typeof suite.store, run: typeof one, keys: [string, string], at: [number, number]) =>
      store.transaction(async (tx) => {
        attempts++;
        let version = run.version;
        await turn(at[0]);
        version = (await tx.writeChange(run.id, version, emptyChange({ jobs: [{ kind: "invoke", runId: run.id, stepId: "x", concurrency: slot(keys[0]) }] }))).version;
        done++;
        await turn(at[1]);
        await tx.writeChange(run.id, version, emptyChange({ jobs: [{ kind: "invoke", runId: run.id, stepId: "y", concurrency: slot(keys[1]) }] }));
        done++;
      });
    const results = await Promise.allSettled([queue(suite.store, one, ["fn:x:c", "fn:x:d"], [1, 3]), queue(other, two, ["fn:x:d", "fn:x:c"], [2, 4])]);
    expect(results.map((result) => result.status)).toEqual(["fulfilled", "fulfilled"]);
    expect(attempts).toBe(2);
    const runs = new Set([one.id, two.id]);
    const claimed = (await suite.store.queue.claim("worker-a", 20, 30_000)).filter((job) => runs.has(job.runId));
    expect(claimed.map((job) => job.runId).sort()).toEqual([one.id, two.id, one.id, two.id].sort());
  });

  it("a notice of freed slots locks its keys in order, as every writer of several keys' rows does: the two never deadlock", async () => {
    // "b" first on disk, so a notice reading the table in its own order would lock it first.
    await suite.sql.query("INSERT INTO concurrency_keys (key, next_at) VALUES ('fn:x:b', now() + interval '1 minute'), ('fn:x:a', now() + interval '1 minute')");
    const writer = suite.db.client();
    const aHeld = signal();
    const wentOn = signal();
    // Another writer of both keys' rows (a claim folding wakes, reconcile) takes them in order of key: "a", then "b".
    const commit = writer.transaction(async (tx) => {
      await tx.query("UPDATE concurrency_keys SET next_at = now() + interval '2 minutes' WHERE key = 'fn:x:a'");
      aHeld.set();
      await wentOn.happened;
      await tx.query("UPDATE concurrency_keys SET next_at = now() + interval '2 minutes' WHERE key = 'fn:x:b'");
    });
    await aHeld.happened;
    const notice = new PgQueue(suite.sql).slotsFreed(["fn:x:b", "fn:x:a"]);
    await sleep(100);
    wentOn.set();
    await Promise.all([commit, notice]);
    // The notice waited for the commit, then made both keys due.
    const rows = await suite.sql.query<{ key: string; due: boolean }>("SELECT key, next_at <= now() AS due FROM concurrency_keys WHERE key IN ('fn:x:a', 'fn:x:b') ORDER BY key");
    expect(rows.map((row) => [row.key, row.due])).toEqual([
      ["fn:x:a", true],
      ["fn:x:b", true],
    ]);
    await writer.close();
  });

  it("refuses to claim outside READ COMMITTED, where it could count slots from before its own locks", async () => {
    const error = await suite.sql
      .transaction(async (tx) => {
        await tx.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
        await tx.query("SELECT id FROM stepwise_claim_keyed('worker-a', 10, 30000, 16, 2000, 20)");
      })
      .catch((caught: unknown) => caught);
    expect(String(error)).toMatch(/only under READ COMMITTED, not repeatable read/);
  });

  it("a claim never waits for a key's row someone holds: that key's wakes stay for a later claim", async () => {
    const key = "fn:held:k";
    await suite.sql.query("INSERT INTO concurrency_keys (key, next_at) VALUES ($1, 'infinity')", [key]);
    const plain = (await seedRun(suite.store, [{ kind: "invoke" }])).jobs[0]!;
    const keyed = (await seedRun(suite.store, [{ kind: "invoke", concurrency: slot(key) }])).jobs[0]!;
    // Another claim counting the key, say (a slow one: 200 full keys took 1.4 s).
    const holder = suite.db.client();
    const first = await whileHeld(
      (hold) =>
        holder.transaction(async (tx) => {
          await tx.query("SELECT key FROM concurrency_keys WHERE key = $1 FOR UPDATE", [key]);
          await hold();
        }),
      () => suite.store.queue.claim("worker-a", 10, 30_000),
    );
    await holder.close();
    expect(first.map((job) => job.id)).toContain(plain.id);
    expect(first.map((job) => job.id)).not.toContain(keyed.id);
    expect(await suite.sql.query("SELECT 1 FROM concurrency_wakes WHERE key = $1", [key])).toHaveLength(1);
    // Once the row is free, the next claim folds the wake and takes the job.
    expect((await suite.store.queue.claim("worker-a", 10, 30_000)).map((job) => job.id)).toContain(keyed.id);
  });

  it("reconcile makes the key of a lease that ran out due, whatever wakes of that key wait", async () => {
    const key = "fn:lapsed:k";
    const job = (await seedRun(suite.store, [{ kind: "invoke", concurrency: slot(key) }])).jobs[0]!;
    await suite.store.queue.claim("worker-a", 10, 30_000);
    // Its worker died: the lease ran out. The key's row says nothing waits; a later job of the
    // key is queued for ten minutes from now.
    await suite.sql.query("UPDATE jobs SET locked_until = now() - interval '1 second' WHERE id = $1", [job.id]);
    await suite.sql.query("UPDATE concurrency_keys SET next_at = 'infinity' WHERE key = $1", [key]);
    await suite.sql.query("INSERT INTO concurrency_wakes (key, run_at) VALUES ($1, now() + interval '10 minutes')", [key]);
    expect(await suite.store.queue.reconcile()).toBe(0);
    expect((await suite.store.queue.claim("worker-b", 10, 30_000)).map((claimed) => claimed.id)).toContain(job.id);
  });

  it("prunes at most as many idle keys' rows as it is asked to, and none a claim or a job still needs", async () => {
    await suite.sql.query("DELETE FROM concurrency_keys");
    await suite.sql.query(
      `INSERT INTO concurrency_keys (key, next_at) SELECT 'fn:idle:k' || g, 'infinity' FROM generate_series(1, 5) g
       UNION ALL SELECT 'fn:due:k' || g, now() FROM generate_series(1, 2) g`,
    );
    // A claim counting one idle key holds its row: that row is left for a later round.
    const holder = suite.db.client();
    const pruned = await whileHeld(
      (hold) =>
        holder.transaction(async (tx) => {
          await tx.query("SELECT 1 FROM concurrency_keys WHERE key = 'fn:idle:k1' FOR UPDATE");
          await hold();
        }),
      async () => [await pruneKeys(suite.sql, 2), await pruneKeys(suite.sql, 10)],
    ).finally(() => holder.close());
    expect(pruned).toEqual([2, 2]);
    const left = (await suite.sql.query<{ key: string }>("SELECT key FROM concurrency_keys ORDER BY key")).map((row) => row.key);
    expect(left).toEqual(["fn:due:k1", "fn:due:k2", "fn:idle:k1"]);
  });
});
