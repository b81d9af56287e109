/**
 * Checkpoints gathered into one statement against transactions that hold some of their rows,
 * on real PostgreSQL (PGlite has one connection, so nothing there is ever held by another).
 * A gathered statement must not wait for one run while holding the others: that would stall
 * every checkpoint behind one long transaction and deadlock with a transaction that locks the
 * same runs in another order (an event that cancels runs B then A).
 */
import type { JobRecord, RunRecord, StepRecord } from "@stepwise/engine";
import { describe, expect, it } from "vitest";
import { postgresAvailable } from "../../../test/support/postgres.ts";
import { suiteDatabase } from "../../../test/support/suite-database.ts";
import { seedRun } from "./store-contract.ts";

function deferred(): { promise: Promise<void>; resolve(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe.runIf(postgresAvailable)("checkpoints beside transactions that hold their rows (real PostgreSQL)", () => {
  const suite = suiteDatabase("ckptlocks");

  /** `count` runs, each with its invocation claimed by worker-a. */
  async function claimedRuns(count: number): Promise<Array<{ run: RunRecord; job: JobRecord }>> {
    const seeded = await Promise.all(Array.from({ length: count }, () => seedRun(suite.store, [{ kind: "invoke" }])));
    const claimed = new Map((await suite.store.queue.claim("worker-a", 100, 30_000)).map((job) => [job.runId, job]));
    return seeded.map(({ run }) => ({ run, job: claimed.get(run.id)! }));
  }

  const step = (runId: string, id: string): StepRecord => ({
    runId, id, name: id, kind: "run", position: 0, status: "completed", output: { id }, attempts: 1, startedAt: new Date(), endedAt: new Date(),
  });
  const checkpoint = ({ run, job }: { run: RunRecord; job: JobRecord }, stepId = "s0") =>
    suite.store.checkpoint({
      runId: run.id, functionId: run.functionId, lease: { jobId: job.id, owner: "worker-a", claims: job.claims }, leaseMs: 30_000,
      step: step(run.id, stepId), bytes: 10, maxRunStateBytes: 1_000_000,
    });

  /**
   * Two checkpoints of runs that fill both statements in flight, so the next ones sent in the
   * same tick go together as one statement: `together` are gathered, whatever their IDs.
   */
  const sendGathered = async (together: Array<{ run: RunRecord; job: JobRecord }>) => {
    const [first, second] = await claimedRuns(2);
    const ahead = [checkpoint(first!), checkpoint(second!)];
    const gathered = together.map((one) => checkpoint(one));
    return { ahead, gathered };
  };

  it("commits the others of a gathered statement while one of its runs is held, and deadlocks with no one who locks them in another order", async () => {
    const [a, b] = await claimedRuns(2);
    let attempts = 0;
    const holding = deferred();
    const aCommitted = deferred();
    // A unit of work that locks B, then (once A's checkpoint is in) A: the order opposite to run IDs, or the same; either way.
    const holder = suite.store.transaction(async (tx) => {
      attempts++;
      await tx.lockRun(b!.run.id);
      holding.resolve();
      await aCommitted.promise;
      return tx.lockRun(a!.run.id);
    });
    await holding.promise;
    const { ahead, gathered } = await sendGathered([a!, b!]);
    expect(await gathered[0]).toEqual({ ok: true, wasQueued: true, version: a!.run.version + 1 });
    aCommitted.resolve();
    expect((await holder)?.steps.map((s) => s.id)).toEqual(["s0"]);
    // The holder's lock bumped B's version once (as every lock does), the checkpoint once more.
    expect(await gathered[1]).toEqual({ ok: true, wasQueued: true, version: b!.run.version + 2 });
    await Promise.all(ahead);
    expect(attempts).toBe(1);
    expect((await suite.store.listSteps(b!.run.id)).map((s) => s.output)).toEqual([{ id: "s0" }]);
  });

  it("commits the others while one run's job is held (a lease being extended), then that one, once", async () => {
    const [a, b] = await claimedRuns(2);
    const client = suite.db.client();
    const holding = deferred();
    const released = deferred();
    const holder = client.transaction(async (sql) => {
      await sql.query("SELECT id FROM jobs WHERE id = $1 FOR UPDATE", [b!.job.id]);
      holding.resolve();
      await released.promise;
    });
    await holding.promise;
    const { ahead, gathered } = await sendGathered([b!, a!]);
    expect(await gathered[1]).toEqual({ ok: true, wasQueued: true, version: a!.run.version + 1 });
    released.resolve();
    await holder;
    expect(await gathered[0]).toEqual({ ok: true, wasQueued: true, version: b!.run.version + 1 });
    await Promise.all(ahead);
    expect((await suite.store.listSteps(b!.run.id)).map((s) => s.id)).toEqual(["s0"]);
  });

  it("refuses a held checkpoint whose run was cancelled by the transaction that held it", async () => {
    const [a, b] = await claimedRuns(2);
    const holding = deferred();
    const aCommitted = deferred();
    const cancel = suite.store.transaction(async (tx) => {
      const locked = await tx.lockRun(b!.run.id);
      holding.resolve();
      await aCommitted.promise;
      await tx.writeChange(b!.run.id, locked!.run.version, {
        run: { status: "cancelled", endedAt: new Date() }, steps: [], jobs: [], dropJobs: "all", openMatchers: [], closeMatchers: [],
      });
    });
    await holding.promise;
    const { ahead, gathered } = await sendGathered([a!, b!]);
    expect(await gathered[0]).toMatchObject({ ok: true });
    aCommitted.resolve();
    await cancel;
    expect(await gathered[1]).toEqual({ ok: false, refused: "run-ended" });
    expect(await suite.store.listSteps(b!.run.id)).toEqual([]);
    await Promise.all(ahead);
  });

  it("waits for many held runs on a few connections: the lease heartbeat still gets through meanwhile", async () => {
    const held = await claimedRuns(12);
    const holding = deferred();
    const released = deferred();
    const holder = suite.store.transaction(async (tx) => {
      for (const { run } of held) await tx.lockRun(run.id);
      holding.resolve();
      await released.promise;
    });
    await holding.promise;
    const { ahead, gathered } = await sendGathered(held);
    await Promise.all(ahead);
    // Until the held checkpoints are written alone, each statement waiting in Postgres for its run.
    const admin = suite.db.client();
    const waiting = async () => Number((await admin.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"))[0]!.n);
    while ((await waiting()) < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(await waiting()).toBe(2);
    // The pool has 10 connections and 12 checkpoints wait: were each waiting on one, this would wait for the holder.
    await suite.store.queue.extendLeases(held.map(({ job }) => job.id), "worker-a", 30_000);
    released.resolve();
    await holder;
    expect((await Promise.all(gathered)).map((result) => result.ok)).toEqual(held.map(() => true));
  });
});
