/**
 * The contract every store and queue adapter must pass: the executor relies on exactly
 * these behaviours (idempotent events, lease-checked completion, no double claims).
 */
import type { JobRecord, NewJob, RunRecord, Store } from "@stepwise/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

export function testStore(name: string, open: () => Promise<{ store: Store; cleanup(): Promise<void> }>): void {
  describe(`store contract: ${name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    let seq = 0;
    const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;

    beforeAll(async () => {
      ({ store, cleanup } = await open());
      await store.migrate();
      await store.migrate(); // idempotent: a second start must not fail
    });
    afterAll(async () => cleanup?.());

    const newRun = (eventId: string): RunRecord => ({
      id: uid("run"),
      functionId: "app-fn",
      eventId,
      status: "queued",
      attempt: 0,
      startedAt: new Date(),
      version: 0,
    });

    it("stores an event once: a repeated id is reported as not new", async () => {
      const id = uid("evt");
      const first = await store.transaction((tx) => tx.insertEvents([{ id, name: "a/b", data: { x: 1 }, ts: 5 }]));
      const again = await store.transaction((tx) => tx.insertEvents([{ id, name: "a/b", data: { x: 2 }, ts: 6 }]));
      expect(first.map((e) => e.id)).toEqual([id]);
      expect(again).toEqual([]);
      expect(await store.getEvent(id)).toEqual({ id, name: "a/b", data: { x: 1 }, ts: 5 });
    });

    it("rolls back everything when the unit of work throws", async () => {
      const id = uid("evt");
      await expect(
        store.transaction(async (tx) => {
          await tx.insertEvents([{ id, name: "a/b", data: {}, ts: 1 }]);
          throw new Error("boom");
        }),
      ).rejects.toThrow("boom");
      expect(await store.getEvent(id)).toBeNull();
    });

    it("keeps runs and steps, replacing a step by id and ordering by position", async () => {
      const run = newRun(uid("evt"));
      await store.transaction(async (tx) => {
        expect(await tx.insertRun(run)).toBe(true);
        expect(await tx.insertRun(run)).toBe(false);
        await tx.saveStep({ runId: run.id, id: "b", name: "b", kind: "sleep", position: 1, status: "sleeping", attempts: 0, startedAt: new Date(), wakeAt: new Date(1000) });
        await tx.saveStep({ runId: run.id, id: "a", name: "a", kind: "run", position: 0, status: "planned", attempts: 0, startedAt: new Date() });
        await tx.saveStep({ runId: run.id, id: "a", name: "a", kind: "run", position: 0, status: "completed", output: { ok: [1, "x", null] }, attempts: 1, startedAt: new Date(), endedAt: new Date() });
        await tx.updateRun(run.id, { status: "completed", output: { done: true }, endedAt: new Date() });
      });
      const steps = await store.listSteps(run.id);
      expect(steps.map((s) => [s.id, s.status, s.output])).toEqual([["a", "completed", { ok: [1, "x", null] }], ["b", "sleeping", undefined]]);
      expect(steps[1]?.wakeAt?.getTime()).toBe(1000);
      const stored = await store.getRun(run.id);
      expect(stored?.status).toBe("completed");
      expect(stored?.output).toEqual({ done: true });
      expect(stored?.endedAt).toBeInstanceOf(Date);
    });

    describe("optimistic apply", () => {
      const setup = async () => {
        const event = { id: uid("evt"), name: "a/b", data: {}, ts: 1 };
        const run = newRun(event.id);
        const [job] = await store.transaction(async (tx) => {
          await tx.insertEvents([event]);
          await tx.insertRun(run);
          return tx.enqueue([{ kind: "invoke", runId: run.id }]);
        });
        const locked = (await store.transaction((tx) => tx.lockRun(run.id)))!;
        // The worker holds the job, as it would after a claim (the store's own queue checks it).
        const claimed = (await store.queue.claim("w", 1_000, 60_000)).find((j) => j.id === job!.id);
        return { event, run: locked, job: claimed ?? job! };
      };
      const step = (runId: string) => ({
        runId, id: "s", name: "s", kind: "run" as const, position: 0, status: "completed" as const,
        output: { n: 1 }, attempts: 1, startedAt: new Date(), endedAt: new Date(),
      });

      it("applies every write in one go when the snapshot is current", async () => {
        const { event, run, job } = await setup();
        const outcome = await store.applyOptimistically!({ run, steps: [], event }, async (tx) => {
          expect(await tx.completeJob(job.id, "w")).toBe(true);
          const locked = await tx.lockRun(run.id);
          await tx.saveStep(step(run.id));
          await tx.updateRun(run.id, { status: "running" });
          return { locked, next: await tx.enqueue([{ kind: "invoke", runId: run.id }]) };
        });
        expect(outcome).not.toBeNull();
        const { locked, next } = outcome!.result;
        expect(next[0]!.id).toMatch(/^\d+$/);
        const stored = (await store.getRun(run.id))!;
        expect([stored.status, stored.version]).toEqual(["running", locked!.version]);
        expect((await store.listSteps(run.id)).map((s) => [s.id, s.output])).toEqual([["s", { n: 1 }]]);
        expect(await store.jobExists(job.id)).toBe(false);
        expect(await store.jobExists(next[0]!.id)).toBe(true);
      });

      it("writes nothing when the run changed since the snapshot", async () => {
        const { event, run, job } = await setup();
        await store.transaction((tx) => tx.lockRun(run.id)); // someone else moved the run on
        const outcome = await store.applyOptimistically!({ run, steps: [], event }, async (tx) => {
          await tx.completeJob(job.id, "w");
          await tx.saveStep(step(run.id));
        });
        expect(outcome).toBeNull();
        expect(await store.listSteps(run.id)).toEqual([]);
        expect(await store.jobExists(job.id)).toBe(true);
      });

      it("writes nothing when the job was completed by another worker", async () => {
        const { event, run, job } = await setup();
        await store.transaction((tx) => tx.completeJob(job.id, "w"));
        const outcome = await store.applyOptimistically!({ run, steps: [], event }, async (tx) => {
          await tx.completeJob(job.id, "w");
          await tx.saveStep(step(run.id));
          await tx.updateRun(run.id, { status: "completed" });
        });
        expect(outcome).toBeNull();
        expect(await store.listSteps(run.id)).toEqual([]);
        expect((await store.getRun(run.id))!.status).toBe("queued");
      });

      it("declines what the snapshot cannot answer, so the caller uses a transaction", async () => {
        const { event, run } = await setup();
        const outcome = await store.applyOptimistically!({ run, steps: [], event }, (tx) => tx.findMatchers("x"));
        expect(outcome).toBeNull();
      });
    });

    it("finds matchers by event name and keeps a frozen JSON null", async () => {
      const run = newRun(uid("evt"));
      const eventName = uid("order/paid");
      await store.transaction(async (tx) => {
        await tx.insertRun(run);
        await tx.insertMatchers([
          { runId: run.id, stepId: "w", kind: "wait", eventName, matchPath: "data.id", matchValue: null },
          { runId: run.id, stepId: "cancel:0", kind: "cancel", eventName, ifExpr: "async.data.x == 1" },
        ]);
      });
      const found = await store.transaction((tx) => tx.findMatchers(eventName));
      expect(found.map((m) => [m.stepId, m.kind, m.matchPath, m.matchValue, m.ifExpr])).toEqual([
        ["cancel:0", "cancel", undefined, undefined, "async.data.x == 1"],
        ["w", "wait", "data.id", null, undefined],
      ]);
      await store.transaction((tx) => tx.deleteMatcher(run.id, "w"));
      expect((await store.transaction((tx) => tx.findMatchers(eventName))).map((m) => m.stepId)).toEqual(["cancel:0"]);
    });

  });
}

/**
 * The queue contract, on a store whose `queue` is the adapter under test. Jobs go in and out
 * the way the engine moves them: written in a transaction, then published; completed in a
 * transaction, then forgotten.
 */
export function testQueue(name: string, open: () => Promise<{ store: Store; cleanup(): Promise<void> }>): void {
  describe(`queue contract: ${name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    let seq = 0;
    const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;

    beforeAll(async () => {
      ({ store, cleanup } = await open());
      await store.migrate();
    });
    afterAll(async () => cleanup?.());

    const enqueueJobs = async (jobs: NewJob[], lease?: { owner: string; leaseMs: number }) => {
      const stored = await store.transaction((tx) => tx.enqueue(jobs, lease));
      await store.queue.publish(stored, lease);
      return stored;
    };
    const complete = async (jobId: string, owner: string) => {
      const done = await store.transaction((tx) => tx.completeJob(jobId, owner));
      if (done) await store.queue.forget(jobId);
      return done;
    };

    const drain = async () => {
      // Other tests' jobs may be due: claim everything so each test starts from an empty queue.
      while ((await store.queue.claim("drain", 100, 3_600_000)).length > 0);
    };

    it("claims due jobs once, not future ones; a job is completed exactly once", async () => {
      await drain();
      const runId = uid("run");
      const [due, later] = (await enqueueJobs([
        { kind: "invoke", runId },
        { kind: "wake", runId, stepId: "s", runAt: new Date(Date.now() + 60_000) },
      ])) as [JobRecord, JobRecord];
      expect(later.runAt.getTime()).toBeGreaterThan(Date.now() + 50_000);
      const [a, b] = await Promise.all([store.queue.claim("w1", 10, 10_000), store.queue.claim("w2", 10, 10_000)]);
      const claimed = [...a, ...b];
      expect(claimed.map((j) => [j.id, j.kind, j.runId, j.stepId, j.claims])).toEqual([[due.id, "invoke", runId, undefined, 1]]);
      const owner = a.length ? "w1" : "w2";
      expect(await complete(due.id, owner)).toBe(true);
      expect(await complete(due.id, owner)).toBe(false);
      const next = await store.queue.nextDueAt();
      expect(Math.abs(next!.getTime() - later.runAt.getTime())).toBeLessThan(1_000);
    });

    it("lets another worker take a job whose lease ran out, and not before", async () => {
      await drain();
      const runId = uid("run");
      await enqueueJobs([{ kind: "wake", runId, stepId: "nap" }]);
      const [job] = await store.queue.claim("dead", 1, 150);
      expect(job).toMatchObject({ kind: "wake", runId, stepId: "nap" });
      expect(await store.queue.claim("alive", 1, 10_000)).toEqual([]);
      await new Promise((r) => setTimeout(r, 250));
      const [again] = await store.queue.claim("alive", 1, 10_000);
      expect(again?.id).toBe(job!.id);
      expect(again?.claims).toBe(2);
      expect(await complete(job!.id, "alive")).toBe(true);
      // The worker that died and came back finds its job done: its result is dropped.
      expect(await complete(job!.id, "dead")).toBe(false);
    });

    it("extends leases by heartbeat and releases jobs for a later time", async () => {
      await drain();
      const runId = uid("run");
      await enqueueJobs([{ kind: "invoke", runId }]);
      const [job] = await store.queue.claim("w", 1, 150);
      await store.queue.extendLeases([job!.id], "w", 10_000);
      await store.queue.extendLeases([job!.id], "not-the-owner", 1);
      await new Promise((r) => setTimeout(r, 250));
      expect(await store.queue.claim("thief", 1, 10_000)).toEqual([]);
      await store.queue.release(job!.id, "not-the-owner", new Date());
      expect(await store.queue.claim("thief", 1, 10_000)).toEqual([]);
      await store.queue.release(job!.id, "w", new Date(Date.now() + 100));
      expect(await store.queue.claim("x", 1, 10_000)).toEqual([]);
      await new Promise((r) => setTimeout(r, 150));
      expect((await store.queue.claim("x", 1, 10_000)).map((j) => j.id)).toEqual([job!.id]);
    });

    it("hands a job queued with a lease straight to its owner, and to others once the lease runs out", async () => {
      await drain();
      const runId = uid("run");
      const [job] = await enqueueJobs([{ kind: "invoke", runId }], { owner: "me", leaseMs: 200 });
      expect(await store.queue.claim("other", 10, 10_000)).toEqual([]);
      await new Promise((r) => setTimeout(r, 300));
      expect((await store.queue.claim("other", 10, 10_000)).map((j) => j.id)).toEqual([job!.id]);
      expect(await complete(job!.id, "other")).toBe(true);
    });

    it("gives 50 jobs to 5 concurrent claimers with no job claimed twice", async () => {
      await drain();
      const runId = uid("run");
      await enqueueJobs(Array.from({ length: 50 }, () => ({ kind: "invoke" as const, runId })));
      const seen: string[] = [];
      await Promise.all(
        Array.from({ length: 5 }, async (_, w) => {
          for (;;) {
            const jobs = await store.queue.claim(`w${w}`, 3, 10_000);
            if (jobs.length === 0) return;
            seen.push(...jobs.map((j) => j.id));
          }
        }),
      );
      expect(seen.length).toBe(50);
      expect(new Set(seen).size).toBe(50);
    });

    it("after releaseAllLeases every leased job is claimable at once", async () => {
      await drain();
      const runId = uid("run");
      const [job] = await enqueueJobs([{ kind: "invoke", runId }]);
      await store.queue.claim("crashed", 1, 3_600_000);
      await store.queue.releaseAllLeases();
      // Earlier tests' drained jobs are released too; ours must be among them.
      expect((await store.queue.claim("restarted", 1_000, 10_000)).map((j) => j.id)).toContain(job!.id);
    });
  });
}
