/**
 * Changes asked for in one turn of the event loop (timers coming due together, answers read
 * together) go to Postgres as one statement: each must end exactly as it would have alone,
 * written or refused by its own guards, whatever the others in its statement do. On PGlite and
 * on real PostgreSQL; what needs a second connection (a transaction holding a run) only there.
 */
import type { Fence, RunChange, RunState } from "@stepwise/engine";
import { PostgresStore, type SqlClient } from "@stepwise/store-postgres";
import { describe, expect, it } from "vitest";
import { freshPglite } from "../../../test/support/pglite.ts";
import { postgresAvailable } from "../../../test/support/postgres.ts";
import { suiteDatabase } from "../../../test/support/suite-database.ts";
import { emptyChange, seedRun, step } from "./store-contract.ts";

/** `client`, counting the store's statements that apply changes: gathered (many runs) and single. */
function counting(client: SqlClient): { sql: SqlClient; counts: { gathered: number; single: number } } {
  const counts = { gathered: 0, single: 0 };
  const sql: SqlClient = {
    query(text, params, options) {
      if (options?.prepare === "stepwise_apply_changes_fn") counts.gathered++;
      if (options?.prepare === "stepwise_apply_change") counts.single++;
      return client.query(text, params, options);
    },
    transaction: (fn) => client.transaction(fn),
    exec: (script) => client.exec(script),
    close: () => client.close(),
  };
  return { sql, counts };
}

/** A run whose invocation worker `w` claimed, as the executor read it. */
async function claimedRun(store: PostgresStore): Promise<{ state: RunState; fence: Fence }> {
  const { run, jobs } = await seedRun(store, [{ kind: "invoke" }]);
  const taken = (await store.queue.claim("w", 1_000, 60_000)).find((job) => job.id === jobs[0]!.id)!;
  return { state: (await store.loadRunState(run.id))!, fence: { jobId: taken.id, owner: "w" } };
}

/** What a change left of a run, with nothing that names the run: two runs given the same change compare equal. */
async function leftOf(store: PostgresStore, sql: SqlClient, runId: string) {
  const state = (await store.loadRunState(runId))!;
  const jobs = await sql.query<{ kind: string; step_id: string | null; leased: boolean }>(
    "SELECT kind, step_id, locked_by IS NOT NULL AS leased FROM jobs WHERE run_id = $1 ORDER BY kind, step_id",
    [runId],
  );
  const matchers = await sql.query<{ step_id: string; event_name: string }>("SELECT step_id, event_name FROM matchers WHERE run_id = $1 ORDER BY step_id", [runId]);
  const { status, version, output, error, attempt } = state.run;
  return {
    run: { status, version, output, error, attempt },
    steps: state.steps.map(({ runId: _, startedAt: __, endedAt: ___, ...rest }) => rest),
    jobs,
    matchers,
  };
}

const inAnHour = new Date(Date.now() + 3_600_000);

/** A change that writes a bit of everything: the run, a step, a job leased and one queued, a wait opened. */
const everything = (runId: string): RunChange =>
  emptyChange({
    run: { status: "running", attempt: 1 },
    steps: [step(runId, "nap", { kind: "sleep", status: "sleeping", output: undefined, wakeAt: inAnHour })],
    jobs: [
      { kind: "invoke", runId, lease: { owner: "w", leaseMs: 30_000 } },
      { kind: "wake", runId, stepId: "nap", runAt: inAnHour },
    ],
    openMatchers: [{ runId, stepId: "ask", kind: "wait", eventName: "user/approved" }],
  });

function gatheredChanges(open: () => Promise<{ client: SqlClient; close(): Promise<void> }>) {
  const withStore = async (fn: (store: PostgresStore, sql: SqlClient, counts: { gathered: number; single: number }) => Promise<void>) => {
    const { client, close } = await open();
    const { sql, counts } = counting(client);
    const store = new PostgresStore(sql);
    try {
      await store.migrate();
      await fn(store, sql, counts);
    } finally {
      await close();
    }
  };

  it("writes changes asked for in one turn in one statement, each under its own guards, as each alone would be written", async () => {
    await withStore(async (store, sql, counts) => {
      const [fresh, moved, stranger, early, twin] = [await claimedRun(store), await claimedRun(store), await claimedRun(store), await claimedRun(store), await claimedRun(store)];
      // Alone first: what the single statement leaves of a run given this change.
      const alone = await store.applyOptimistically(twin.state, twin.fence, everything(twin.state.run.id));
      expect(counts).toEqual({ gathered: 0, single: 1 });
      // Another worker moved this run on since it was read.
      await store.transaction((tx) => tx.lockRun(moved.state.run.id));
      // A timer of its own, not due yet.
      const { run: sleeper, jobs: timers } = await seedRun(store, [{ kind: "wake", stepId: "nap", runAt: inAnHour }]);
      const sleeping = (await store.loadRunState(sleeper.id))!;

      const [written, ...refused] = await Promise.all([
        store.applyOptimistically(fresh.state, fresh.fence, everything(fresh.state.run.id)),
        store.applyOptimistically(moved.state, moved.fence, everything(moved.state.run.id)),
        store.applyOptimistically(stranger.state, { ...stranger.fence, owner: "stranger" }, everything(stranger.state.run.id)),
        store.applyOptimistically(sleeping, { jobId: timers[0]!.id, owner: "w", unclaimed: true }, everything(sleeper.id)),
        store.applyOptimistically(early.state, { ...early.fence, jobId: timers[0]!.id }, everything(early.state.run.id)),
      ]);
      expect(counts).toEqual({ gathered: 1, single: 1 });
      expect(refused).toEqual([null, null, null, null]);
      expect(written).toMatchObject({ version: fresh.state.run.version + 1, deleted: [fresh.fence.jobId] });
      expect(written!.continued).toMatchObject({ runId: fresh.state.run.id, kind: "invoke" });
      expect(written!.queued.map((job) => [job.runId, job.kind, job.stepId])).toEqual([[fresh.state.run.id, "wake", "nap"]]);
      expect([alone!.deleted.length, alone!.queued.length, alone!.continued?.kind]).toEqual([1, 1, "invoke"]);
      expect(await leftOf(store, sql, fresh.state.run.id)).toEqual(await leftOf(store, sql, twin.state.run.id));
      // The refused ones wrote nothing: their jobs are where they were, no step, no wait.
      for (const { state } of [moved, stranger, early]) {
        const left = await leftOf(store, sql, state.run.id);
        expect([left.run.status, left.steps, left.jobs, left.matchers]).toEqual(["queued", [], [{ kind: "invoke", step_id: null, leased: true }], []]);
      }
      expect((await leftOf(store, sql, sleeper.id)).jobs).toEqual([{ kind: "wake", step_id: "nap", leased: false }]);

      // And on from there, as the run's end: every job dropped, every wait closed, the step updated.
      const ending = (runId: string) =>
        emptyChange({ run: { status: "completed", output: "done" }, steps: [step(runId, "nap", { kind: "sleep" })], dropJobs: "all", closeMatchers: "all" });
      const next = (state: RunState, version: number, continued: string) => ({
        state: { ...state, run: { ...state.run, version } },
        fence: { jobId: continued, owner: "w" },
      });
      const twinNext = next(twin.state, alone!.version, alone!.continued!.id);
      const freshNext = next(fresh.state, written!.version, written!.continued!.id);
      await store.applyOptimistically(twinNext.state, twinNext.fence, ending(twin.state.run.id));
      const [ended] = await Promise.all([
        store.applyOptimistically(freshNext.state, freshNext.fence, ending(fresh.state.run.id)),
        store.applyOptimistically(stranger.state, { ...stranger.fence, owner: "stranger" }, ending(stranger.state.run.id)),
      ]);
      expect(counts).toEqual({ gathered: 2, single: 2 });
      expect(ended!.deleted).toHaveLength(2);
      expect(await leftOf(store, sql, fresh.state.run.id)).toEqual(await leftOf(store, sql, twin.state.run.id));
      expect((await leftOf(store, sql, fresh.state.run.id)).jobs).toEqual([]);
    });
  });

  it("wakes runs whose timers came due together in one statement, each run getting back its own jobs", async () => {
    await withStore(async (store, sql, counts) => {
      // A run whose answer closes one of its waits and drops that wait's timeout, by name.
      const { state: waiting, fence } = await claimedRun(store);
      // Claimed before the timers are queued: nobody holds those.
      const past = new Date(Date.now() - 1_000);
      const sleepers = await Promise.all([0, 1, 2].map(() => seedRun(store, [{ kind: "wake", stepId: "nap", runAt: past }])));
      const runId = waiting.run.id;
      const opened = await store.transaction(async (tx) => {
        const locked = (await tx.lockRun(runId))!;
        return tx.writeChange(runId, locked.run.version, emptyChange({
          jobs: [{ kind: "wait-timeout", runId, stepId: "ask", runAt: inAnHour }, { kind: "wait-timeout", runId, stepId: "other", runAt: inAnHour }],
          openMatchers: [{ runId, stepId: "ask", kind: "wait", eventName: "user/approved" }, { runId, stepId: "other", kind: "wait", eventName: "user/declined" }],
        }));
      });
      const wakeUp = (id: string) => emptyChange({ steps: [step(id, "nap", { kind: "sleep" })], jobs: [{ kind: "invoke", runId: id, lease: { owner: "w", leaseMs: 30_000 } }] });
      const asleep = await Promise.all(sleepers.map(async ({ run }) => (await store.loadRunState(run.id))!));
      const results = await Promise.all([
        ...sleepers.map(({ run, jobs }, n) => store.applyOptimistically(asleep[n]!, { jobId: jobs[0]!.id, owner: "w", unclaimed: true }, wakeUp(run.id))),
        store.applyOptimistically({ ...waiting, run: { ...waiting.run, version: opened.version } }, fence,
          emptyChange({ closeMatchers: ["ask"], dropJobs: [{ kind: "wait-timeout", stepId: "ask" }], jobs: [{ kind: "invoke", runId }] })),
      ]);
      expect(counts.gathered).toBe(1);
      sleepers.forEach(({ run, jobs }, n) => {
        expect(results[n]).toMatchObject({ version: run.version + 1, deleted: [jobs[0]!.id], queued: [] });
        expect(results[n]!.continued).toMatchObject({ runId: run.id, kind: "invoke" });
      });
      const answered = results[3]!;
      expect([answered.deleted.length, answered.continued, answered.queued.map((job) => [job.runId, job.kind])]).toEqual([2, undefined, [[runId, "invoke"]]]);
      const left = await leftOf(store, sql, runId);
      expect([left.jobs, left.matchers]).toEqual([
        [{ kind: "invoke", step_id: null, leased: false }, { kind: "wait-timeout", step_id: "other", leased: false }],
        [{ step_id: "other", event_name: "user/declined" }],
      ]);
    });
  });

  it("fails only a change that cannot be encoded; the others of its turn are written", async () => {
    await withStore(async (store) => {
      const [good, unread] = [await claimedRun(store), await claimedRun(store)];
      const results = await Promise.allSettled([
        store.applyOptimistically(good.state, good.fence, emptyChange({ steps: [step(good.state.run.id, "s")] })),
        // A step read without its output is never written back (a bug, stopped before any statement).
        store.applyOptimistically(unread.state, unread.fence, emptyChange({ steps: [step(unread.state.run.id, "big", { output: undefined, outputBytes: 10 })] })),
      ]);
      expect(results[0]).toMatchObject({ status: "fulfilled", value: { version: good.state.run.version + 1 } });
      expect(results[1]).toMatchObject({ status: "rejected", reason: { message: expect.stringMatching(/read without its output/) } });
    });
  });

  it("goes on with a second change of the same run alone, so the run takes one of the two", async () => {
    await withStore(async (store) => {
      const [a, b] = [await claimedRun(store), await claimedRun(store)];
      const results = await Promise.all([
        store.applyOptimistically(a.state, a.fence, emptyChange({ run: { status: "running" } })),
        store.applyOptimistically(b.state, b.fence, emptyChange({ run: { status: "running" } })),
        store.applyOptimistically(a.state, a.fence, emptyChange({ run: { status: "completed" } })),
      ]);
      expect(results[1]).toMatchObject({ version: b.state.run.version + 1 });
      const ofA = [results[0], results[2]];
      expect(ofA.filter((result) => result !== null)).toHaveLength(1);
      expect((await store.getRun(a.state.run.id))!.status).toBe(ofA[0] ? "running" : "completed");
    });
  });

  it("fails only the change holding a value the store refuses; the others of its turn are written", async () => {
    await withStore(async (store, _sql, counts) => {
      const [good, bad] = [await claimedRun(store), await claimedRun(store)];
      const results = await Promise.allSettled([
        store.applyOptimistically(good.state, good.fence, emptyChange({ steps: [step(good.state.run.id, "s")] })),
        // Postgres keeps no NUL character in text.
        store.applyOptimistically(bad.state, bad.fence, emptyChange({ steps: [step(bad.state.run.id, "a\u0000b")] })),
      ]);
      expect(counts.gathered).toBe(1);
      expect(results[0]).toMatchObject({ status: "fulfilled", value: { version: good.state.run.version + 1 } });
      expect(results[1]).toMatchObject({ status: "rejected" });
      expect((await store.listSteps(good.state.run.id)).map((s) => s.id)).toEqual(["s"]);
      expect(await store.listSteps(bad.state.run.id)).toEqual([]);
    });
  });
}

describe("changes gathered into one statement, on PGlite", () => {
  gatheredChanges(async () => {
    const client = await freshPglite();
    return { client, close: () => client.close() };
  });
});

describe.runIf(postgresAvailable)("changes gathered into one statement (real PostgreSQL)", () => {
  const suite = suiteDatabase("gathered");
  gatheredChanges(async () => ({ client: suite.db.client(), close: async () => {} }));

  /** A transaction on a connection of its own holding the row of `table` with this `id` until `release` (which resolves once it ended). */
  async function holdRow(table: "runs" | "jobs", id: string): Promise<{ release(): Promise<void> }> {
    let release!: () => void;
    let holding!: () => void;
    const held = new Promise<void>((resolve) => (holding = resolve));
    const holder = suite.db.client().transaction(async (tx) => {
      await tx.query(`SELECT 1 FROM ${table} WHERE id = $1 FOR UPDATE`, [id]);
      holding();
      await new Promise<void>((done) => (release = done));
    });
    await held;
    return { release: async () => (release(), await holder) };
  }

  it("writes the others of a turn while a transaction holds one run; that one waits for it alone and is written after", async () => {
    const { sql, counts } = counting(suite.db.client());
    const store = new PostgresStore(sql);
    const [held, b, c] = [await claimedRun(store), await claimedRun(store), await claimedRun(store)];
    const holder = await holdRow("runs", held.state.run.id);
    let heldSettled = false;
    const heldWrite = store.applyOptimistically(held.state, held.fence, emptyChange({ run: { status: "running" } })).finally(() => (heldSettled = true));
    const others = await Promise.all([
      store.applyOptimistically(b.state, b.fence, emptyChange({ run: { status: "running" } })),
      store.applyOptimistically(c.state, c.fence, emptyChange({ run: { status: "running" } })),
    ]);
    expect(others.map((result) => result?.version)).toEqual([b.state.run.version + 1, c.state.run.version + 1]);
    expect(counts.gathered).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(heldSettled).toBe(false);
    await holder.release();
    expect(await heldWrite).toMatchObject({ version: held.state.run.version + 1, deleted: [held.fence.jobId] });
    expect(counts.single).toBe(1);
  });

  it("extends the leases it can at once, leaving a job another transaction holds to the next beat", async () => {
    const store = new PostgresStore(suite.db.client());
    const [held, free] = [await claimedRun(store), await claimedRun(store)];
    const leaseOf = async (jobId: string) => (await suite.sql.query<{ until: Date }>("SELECT locked_until AS until FROM jobs WHERE id = $1", [jobId]))[0]!.until.getTime();
    const before = { held: await leaseOf(held.fence.jobId), free: await leaseOf(free.fence.jobId) };
    const holder = await holdRow("jobs", held.fence.jobId);
    try {
      // Not waiting for the held job: this returns while the transaction still holds it.
      await store.queue.extendLeases([held.fence.jobId, free.fence.jobId], "w", 600_000);
      expect(await leaseOf(free.fence.jobId)).toBeGreaterThan(before.free + 300_000);
    } finally {
      await holder.release();
    }
    expect(await leaseOf(held.fence.jobId)).toBe(before.held);
    await store.queue.extendLeases([held.fence.jobId], "w", 600_000);
    expect(await leaseOf(held.fence.jobId)).toBeGreaterThan(before.held + 300_000);
  });

  it("writes a change whose job a transaction holds alone once it is free, the others of its turn meanwhile", async () => {
    const { sql, counts } = counting(suite.db.client());
    const store = new PostgresStore(sql);
    const [held, other] = [await claimedRun(store), await claimedRun(store)];
    const holder = await holdRow("jobs", held.fence.jobId);
    let heldSettled = false;
    const heldWrite = store.applyOptimistically(held.state, held.fence, emptyChange({ run: { status: "running" } })).finally(() => (heldSettled = true));
    expect(await store.applyOptimistically(other.state, other.fence, emptyChange({ run: { status: "running" } }))).toMatchObject({ version: other.state.run.version + 1 });
    expect(counts.gathered).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(heldSettled).toBe(false);
    await holder.release();
    expect(await heldWrite).toMatchObject({ version: held.state.run.version + 1, deleted: [held.fence.jobId] });
  });
});
