/**
 * A debounce or batch decides whether its run was handed out yet while other transactions hold
 * the same rows, on real PostgreSQL (PGlite has one connection: nothing there is held by
 * another): a keyed claim that looks at the run's first invocation and takes nothing, a cancel
 * of the run, and the prune of flow-control rows. Each once split a burst in two or deadlocked.
 */
import { describe, expect, it } from "vitest";
import { postgresAvailable } from "../../../test/support/postgres.ts";
import { signal } from "../../../test/support/signal.ts";
import { suiteDatabase } from "../../../test/support/suite-database.ts";
import { emptyChange, seedRun } from "./store-contract.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.runIf(postgresAvailable)("debounce and batch holds beside other transactions (real PostgreSQL)", () => {
  const suite = suiteDatabase("heldstarts");

  const take = (key: string, runId: string) => suite.store.transaction((tx) => tx.takeDebounce("app-held", key, runId, () => undefined));
  /** A run whose first invocation is queued for a minute from now, as a debounced run's is. */
  const waiting = () => seedRun(suite.store, [{ kind: "invoke", delayMs: 60_000 }]);

  it("waits for a keyed claim that looks at the held run's job and takes nothing: the next event still replaces that run", async () => {
    const slot = [{ key: "fn:app-held:ck", limit: 1 }];
    // The key's one slot is taken by an invocation out with a worker.
    const busy = await seedRun(suite.store, [{ kind: "invoke" }]);
    await suite.sql.query("UPDATE jobs SET concurrency = $2::jsonb, locked_by = 'w', locked_until = now() + interval '1 minute', claims = 1 WHERE run_id = $1", [busy.run.id, JSON.stringify(slot)]);
    // The held run is due and waits for that slot.
    const held = await seedRun(suite.store, [{ kind: "invoke" }]);
    await suite.sql.query("UPDATE jobs SET concurrency = $2::jsonb WHERE run_id = $1", [held.run.id, JSON.stringify(slot)]);
    await take("k", held.run.id);
    const next = await waiting();
    const released = signal();
    const lookedAt = signal();
    // A keyed claim reads its candidates (locking them), finds the key full, and takes nothing;
    // its transaction stays open here, as a slow one would.
    await suite.sql.query("INSERT INTO concurrency_keys (key, next_at) VALUES ('fn:app-held:ck', now()) ON CONFLICT (key) DO UPDATE SET next_at = now()");
    const claim = suite.sql.transaction(async (tx) => {
      expect(await tx.query("SELECT id FROM stepwise_claim_keyed('claimer', 16, 30000, 16, 2000, 20)")).toEqual([]);
      lookedAt.set();
      await released.happened;
    });
    await lookedAt.happened;
    expect(await suite.sql.query("SELECT id FROM jobs WHERE run_id = $1 FOR UPDATE SKIP LOCKED", [held.run.id])).toEqual([]);
    const taking = take("k", next.run.id);
    await sleep(100);
    released.set();
    await claim;
    const [job] = await suite.sql.query<{ claims: number }>("SELECT claims FROM jobs WHERE run_id = $1", [held.run.id]);
    expect({ claims: Number(job?.claims), replaces: (await taking).replaces }).toEqual({ claims: 0, replaces: held.run.id });
  });

  it("takes the held run's row before its job, as a cancel does: the two meet without a deadlock", async () => {
    const held = await waiting();
    await take("d", held.run.id);
    const next = await waiting();
    let attempts = 0;
    const heldLocked = signal();
    // An event of the key: the store locks the held run and its job; the unit then ends the run.
    const event = suite.store.transaction(async (tx) => {
      attempts++;
      const taken = await tx.takeDebounce("app-held", "d", next.run.id, () => undefined);
      heldLocked.set();
      await sleep(100);
      const state = taken.replaces ? await tx.lockRun(taken.replaces) : null;
      if (state?.run.status === "queued") await tx.writeChange(state.run.id, state.run.version, emptyChange({ run: { status: "skipped", endedAt: new Date() }, dropJobs: "all" }));
    });
    // A cancel of the held run meanwhile: its row, then its jobs.
    const cancel = suite.store.transaction(async (tx) => {
      attempts++;
      await heldLocked.happened;
      const state = (await tx.lockRun(held.run.id))!;
      if (state.run.status === "queued") await tx.writeChange(held.run.id, state.run.version, emptyChange({ run: { status: "cancelled", endedAt: new Date() }, dropJobs: "all" }));
    });
    await Promise.all([event, cancel]);
    // A deadlock would have aborted one of them, and the store would have run it again.
    expect(attempts).toBe(2);
    expect((await suite.store.getRun(held.run.id))?.status).toBe("skipped");
  });

  it("keeps a debounce row that an event pointed at a new run while the prune was deciding", async () => {
    const started = await waiting();
    await take("p", started.run.id);
    // That run went out and started: its row holds nothing back, and the prune may drop it.
    await suite.sql.query("UPDATE jobs SET claims = 1 WHERE run_id = $1", [started.run.id]);
    await suite.sql.query("UPDATE runs SET status = 'running' WHERE id = $1", [started.run.id]);
    const next = await waiting();
    let prune!: Promise<number>;
    await suite.store.transaction(async (tx) => {
      expect((await tx.takeDebounce("app-held", "p", next.run.id, () => undefined)).replaces).toBeNull();
      // The prune saw the row naming the started run; it waits for this commit, which names `next`.
      prune = suite.store.pruneFlowControl(100);
      await sleep(300);
    });
    await prune;
    const [row] = await suite.sql.query<{ run_id: string }>("SELECT run_id FROM debounces WHERE function_id = 'app-held' AND key = 'p'");
    expect(row?.run_id).toBe(next.run.id);
    const later = await waiting();
    expect((await take("p", later.run.id)).replaces).toBe(next.run.id);
  });
});
