/**
 * The contract every store and queue adapter must pass: the executor relies on exactly these
 * behaviours (idempotent events, values that come back exactly as written, changes guarded by
 * version and lease, one job per purpose, no double claims).
 */
import type { JobRecord, NewJob, RunChange, RunRecord, Store, StepRecord } from "@stepwise/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

type Open = () => Promise<{ store: Store; cleanup(): Promise<void> }>;

let seq = 0;
const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;

export const emptyChange = (patch: Partial<RunChange> = {}): RunChange => ({
  run: {},
  steps: [],
  jobs: [],
  dropJobs: [],
  openMatchers: [],
  closeMatchers: [],
  ...patch,
});

const newRun = (eventId: string): RunRecord => ({
  id: uid("run"),
  functionId: "app-fn",
  eventId,
  status: "queued",
  attempt: 0,
  startedAt: new Date(),
  version: 0,
  stateBytes: 0,
});

export const step = (runId: string, id: string, fields: Partial<StepRecord> = {}): StepRecord => ({
  runId,
  id,
  name: id,
  kind: "run",
  position: 0,
  status: "completed",
  output: { n: 1 },
  attempts: 1,
  startedAt: new Date(),
  endedAt: new Date(),
  ...fields,
});

/** A run (with its event) in the store, and `jobs` queued for it the way the engine queues them. */
export async function seedRun(store: Store, jobs: Array<Omit<NewJob, "runId">> = []): Promise<{ run: RunRecord; jobs: JobRecord[] }> {
  const event = { id: uid("evt"), name: "a/b", data: {}, ts: 1 };
  const run = newRun(event.id);
  const written = await store.transaction(async (tx) => {
    await tx.insertEvents([event]);
    await tx.insertRuns([{ run }]);
    return tx.writeChange(run.id, 0, emptyChange({ jobs: jobs.map((job) => ({ ...job, runId: run.id })) }));
  });
  await store.queue.afterCommit({ queued: written.queued, deleted: [] });
  return { run: { ...run, version: written.version }, jobs: [...written.queued, ...(written.continued ? [written.continued] : [])] };
}

export function testStore(name: string, open: Open): void {
  describe(`store contract: ${name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;

    beforeAll(async () => {
      ({ store, cleanup } = await open());
      await store.migrate();
      await store.migrate(); // idempotent: a second start must not fail
    });
    afterAll(async () => cleanup?.());

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

    it("gives back every JSON value exactly as JSON.stringify wrote it: NUL, lone surrogates, key order, depth", async () => {
      let deep: unknown = "bottom";
      for (let i = 0; i < 1_000; i++) deep = [deep];
      const values: unknown[] = [
        "a\u0000b",
        { "\u0000key": "\ud800 lone high", low: "\udfff", emoji: "😀" },
        { b: 1, a: 2, "10": 3, "2": 4 },
        deep,
        null,
        [1.5, -0, 1e21, "\\u0000 written out"],
      ];
      const { run } = await seedRun(store);
      const steps = values.map((output, position) => step(run.id, `s${position}`, { position, output }));
      const eventId = uid("evt");
      await store.transaction(async (tx) => {
        const locked = (await tx.lockRun(run.id))!;
        await tx.writeChange(run.id, locked.run.version, emptyChange({ steps, run: { status: "completed", output: values[1], endedAt: new Date() } }));
        expect(JSON.stringify((await tx.lockRun(run.id))!.steps.map((s) => s.output))).toBe(JSON.stringify(values));
        await tx.insertEvents([{ id: eventId, name: "a/b", data: { text: "\u0000\ud800", order: { z: 1, a: 2 } }, ts: 1 }]);
      });
      const stored = await store.listSteps(run.id);
      for (const [position, value] of values.entries()) expect(JSON.stringify(stored[position]!.output)).toBe(JSON.stringify(value));
      expect(JSON.stringify((await store.getRun(run.id))!.output)).toBe(JSON.stringify(values[1]));
      expect(JSON.stringify((await store.getEvent(eventId))!.data)).toBe(JSON.stringify({ text: "\u0000\ud800", order: { z: 1, a: 2 } }));
    });

    it("reads a run's state without the outputs larger than asked, giving their size, and refuses to write such a step back", async () => {
      const { run } = await seedRun(store);
      const big = { text: "é".repeat(600) }; // 1,200 bytes of UTF-8, 1,213 as JSON
      await store.transaction(async (tx) => {
        const locked = (await tx.lockRun(run.id))!;
        await tx.writeChange(run.id, locked.run.version, emptyChange({ steps: [step(run.id, "small", { position: 0 }), step(run.id, "big", { position: 1, output: big })] }));
      });
      const state = (await store.loadRunState(run.id, { maxOutputBytes: 1_000 }))!;
      const [small, left] = state.steps;
      expect([small!.output, small!.outputBytes]).toEqual([{ n: 1 }, undefined]);
      expect([left!.output, left!.outputBytes]).toEqual([undefined, new TextEncoder().encode(JSON.stringify(big)).byteLength]);
      // Read in full otherwise, and everywhere the run is shown.
      expect((await store.loadRunState(run.id))!.steps[1]!.output).toEqual(big);
      expect((await store.listSteps(run.id))[1]!.output).toEqual(big);
      // Or only the steps asked for, in position order.
      expect((await store.listSteps(run.id, { ids: ["big", "nope", "small"] })).map((s) => s.id)).toEqual(["small", "big"]);
      expect(await store.listSteps(run.id, { ids: [] })).toEqual([]);
      // Written back as read, it would lose its output: refused, and nothing changes.
      await expect(
        store.transaction(async (tx) => {
          const locked = (await tx.lockRun(run.id))!;
          await tx.writeChange(run.id, locked.run.version, emptyChange({ steps: [{ ...left!, attempts: 2 }] }));
        }),
      ).rejects.toThrow(/was read without its output and must not be written back/);
      expect((await store.listSteps(run.id))[1]).toMatchObject({ output: big, attempts: 1 });
    });

    it("keeps steps by ID, ordered by position; a step written again replaces the stored one", async () => {
      const { run } = await seedRun(store);
      await store.transaction(async (tx) => {
        const locked = (await tx.lockRun(run.id))!;
        await tx.writeChange(run.id, locked.run.version, emptyChange({
          steps: [
            step(run.id, "b", { kind: "sleep", position: 1, status: "sleeping", output: undefined, attempts: 0, wakeAt: new Date(1000) }),
            step(run.id, "a", { position: 0, status: "planned", output: undefined, attempts: 0 }),
          ],
        }));
      });
      await store.transaction(async (tx) => {
        const locked = (await tx.lockRun(run.id))!;
        expect(locked.steps.map((s) => s.id)).toEqual(["a", "b"]);
        await tx.writeChange(run.id, locked.run.version, emptyChange({ steps: [step(run.id, "a", { output: { ok: [1, "x", null] } })] }));
      });
      const steps = await store.listSteps(run.id);
      expect(steps.map((s) => [s.id, s.status, s.output])).toEqual([["a", "completed", { ok: [1, "x", null] }], ["b", "sleeping", undefined]]);
      expect(steps[1]?.wakeAt?.getTime()).toBe(1000);
    });

    it("keeps a step's own retry policy until a write drops it, in every read of the run", async () => {
      const { run } = await seedRun(store);
      const retry = { retries: 7, backoff: { initialMs: 250, factor: 3 } };
      await store.transaction(async (tx) => {
        const locked = (await tx.lockRun(run.id))!;
        await tx.writeChange(run.id, locked.run.version, emptyChange({ steps: [step(run.id, "charge", { status: "retrying", output: undefined, retry })] }));
      });
      expect((await store.listSteps(run.id))[0]?.retry).toEqual(retry);
      expect((await store.loadRunState(run.id))?.steps[0]?.retry).toEqual(retry);
      expect((await store.loadRunState(run.id, { maxOutputBytes: 10 }))?.steps[0]?.retry).toEqual(retry);
      await store.transaction(async (tx) => {
        const locked = (await tx.lockRun(run.id))!;
        expect(locked.steps[0]?.retry).toEqual(retry);
        await tx.writeChange(run.id, locked.run.version, emptyChange({ steps: [step(run.id, "charge", { output: "ok", retry: undefined })] }));
      });
      expect((await store.listSteps(run.id))[0]).not.toHaveProperty("retry");
    });

    it("holds an idempotency key for its run until it expires, then hands it to the next", async () => {
      const take = (runId: string, ttlMs: number) => store.transaction((tx) => tx.reserveIdempotencyKey("app-fn", "order-1", runId, ttlMs));
      expect(await take("run-a", 200)).toBe("run-a");
      expect(await take("run-b", 200)).toBe("run-a");
      expect(await store.transaction((tx) => tx.reserveIdempotencyKey("app-other", "order-1", "run-c", 200))).toBe("run-c");
      await new Promise((resolve) => setTimeout(resolve, 250));
      expect(await take("run-b", 200)).toBe("run-b");
      expect(await take("run-a", 200)).toBe("run-b");
      // Expired keys and spent rate limits are pruned; a held key is not.
      await store.transaction((tx) => tx.takeRateLimit("app-fn", "spent", 1, 0));
      await new Promise((resolve) => setTimeout(resolve, 250));
      expect(await store.pruneFlowControl(100)).toBeGreaterThanOrEqual(2);
      expect(await store.transaction((tx) => tx.reserveIdempotencyKey("app-other", "order-1", "run-d", 200))).toBe("run-d");
    });

    it("rate-limits starts per function and key: a burst up to the limit, then one per interval", async () => {
      // 3 per 3 s: one start every second, bursts of up to 3 (long enough for a loaded machine).
      const take = (fn: string, key: string) => store.transaction((tx) => tx.takeRateLimit(fn, key, 1_000, 2_000));
      const burst = [];
      for (let i = 0; i < 5; i++) burst.push(await take("app-rl", "k"));
      expect(burst).toEqual([true, true, true, false, false]);
      expect(await take("app-rl", "other")).toBe(true);
      expect(await take("app-rl2", "k")).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      expect([await take("app-rl", "k"), await take("app-rl", "k")]).toEqual([true, false]);
    });

    it("throttles starts per function and key: a burst, then one per interval, each later than the last", async () => {
      // 10 per second with bursts of 2: two at once, then one every 100 ms.
      const take = (fn: string, key: string) => store.transaction((tx) => tx.takeThrottle(fn, key, 100, 100));
      const started = Date.now();
      const delays: number[] = [];
      for (let i = 0; i < 5; i++) delays.push((await take("app-th", "k"))! + (Date.now() - started));
      // Each start as its schedule says, counted from the first take (the takes themselves take
      // time: on a loaded machine one took 90 ms; the schedule's steps are 100 ms apart).
      [0, 0, 100, 200, 300].forEach((want, i) => expect(Math.abs(delays[i]! - want)).toBeLessThan(95));
      expect(await take("app-th", "other")).toBe(0);
      expect(await take("app-th2", "k")).toBe(0);
      // A start further away than the run can wait is not taken, and moves nothing for the next.
      // (One start per 500 ms: the takes, a few ms each, can be far slower on a loaded machine.)
      const bounded = (maxDelayMs: number) => store.transaction((tx) => tx.takeThrottle("app-th3", "k", 500, 0, maxDelayMs));
      expect(await bounded(750)).toBe(0);
      expect(await bounded(750)).toBeGreaterThan(250);
      const boundedAt = Date.now();
      expect(await bounded(750)).toBeNull();
      // The next start is 1,000 ms after the first (less the time since): had the refused take
      // moved the schedule, it would be 1,500 ms.
      const next = (await bounded(5_000))! + (Date.now() - boundedAt);
      expect(next).toBeGreaterThan(600);
      expect(next).toBeLessThan(1_250);
    });

    it("lets one live run hold a singleton key: the next takes it once the holder ended, or by force", async () => {
      const [a, b, c] = [await seedRun(store), await seedRun(store), await seedRun(store)];
      const take = (runId: string, force = false) => store.transaction((tx) => tx.takeSingleton("app-single", "k", runId, force, () => undefined));
      expect(await take(a.run.id)).toBeNull();
      expect(await take(b.run.id)).toBe(a.run.id);
      expect(await store.transaction((tx) => tx.takeSingleton("app-single", "other", b.run.id, false, () => undefined))).toBeNull();
      await store.transaction(async (tx) => {
        const state = (await tx.lockRun(a.run.id))!;
        await tx.writeChange(a.run.id, state.run.version, emptyChange({ run: { status: "completed", endedAt: new Date() } }));
      });
      expect(await take(b.run.id)).toBeNull();
      expect(await take(c.run.id, true)).toBe(b.run.id);
      expect(await take(a.run.id)).toBe(c.run.id);
      // A holder the same transaction started is not in the record yet, and is live all the same.
      const inOne = await store.transaction(async (tx) => {
        await tx.takeSingleton("app-single", "same-tx", "run-not-written", false, () => undefined);
        return tx.takeSingleton("app-single", "same-tx", b.run.id, false, (id) => (id === "run-not-written" ? true : undefined));
      });
      expect(inOne).toBe("run-not-written");
    });

    it("lets a later event's run replace a debounced run until its first invocation is handed out", async () => {
      const take = (key: string, runId: string, pendingHere: (id: string) => boolean | undefined = () => undefined) =>
        store.transaction((tx) => tx.takeDebounce("app-deb", key, runId, pendingHere));
      const later = () => seedRun(store, [{ kind: "invoke", delayMs: 60_000 }]);
      const [a, b, c] = [await later(), await later(), await later()];
      expect(await take("k", a.run.id)).toEqual({ replaces: null, openedMsAgo: 0 });
      expect((await take("k", b.run.id)).replaces).toBe(a.run.id);
      await new Promise((resolve) => setTimeout(resolve, 60));
      // The burst opened with a's event: its age goes on counting while runs replace each other.
      const third = await take("k", c.run.id);
      expect(third.replaces).toBe(b.run.id);
      expect(third.openedMsAgo).toBeGreaterThanOrEqual(50);
      // Once the holder's first invocation is claimed, the next event opens a new burst.
      const due = await seedRun(store, [{ kind: "invoke" }]);
      expect((await take("k2", due.run.id)).replaces).toBeNull();
      let claimed = false;
      for (let i = 0; i < 20 && !claimed; i++) claimed = (await store.queue.claim("w", 1_000, 60_000)).some((job) => job.id === due.jobs[0]!.id);
      expect(claimed).toBe(true);
      expect(await take("k2", c.run.id)).toEqual({ replaces: null, openedMsAgo: 0 });
      // A run started in the same transaction (not in the record yet) is replaced when the caller says so.
      expect((await take("k3", "run-not-written")).replaces).toBeNull();
      expect((await take("k3", a.run.id, (id) => (id === "run-not-written" ? true : undefined))).replaces).toBe("run-not-written");
    });

    it("queues one tick per cron pattern, keeping the time of one already queued", async () => {
      const at = (ms: number) => new Date(Date.now() + ms);
      const first = await store.transaction((tx) => tx.queueCronTick({ functionId: "app-cron", cron: "0 9 * * *", runAt: at(60_000) }));
      expect(first).toMatchObject({ kind: "cron", runId: "cron:app-cron", stepId: "0 9 * * *" });
      expect(await store.transaction((tx) => tx.queueCronTick({ functionId: "app-cron", cron: "0 9 * * *", runAt: at(5_000) }))).toBeNull();
      expect(await store.transaction((tx) => tx.queueCronTick({ functionId: "app-cron", cron: "0 10 * * *", runAt: at(5_000) }))).not.toBeNull();
      // A sync keeps the queued tick of a pattern it still has and drops the other.
      const fn = { id: "app-cron", appId: "app", localId: "cron", config: { id: "cron", triggers: [{ cron: "0 9 * * *" }], retries: 0 } };
      const app = { id: "app", url: "http://127.0.0.1:1/api/durable", sdk: "test", features: [], syncedAt: new Date() };
      const synced = await store.syncApp(app, [fn], [{ functionId: "app-cron", cron: "0 9 * * *", runAt: at(1_000) }]);
      expect(synced.queued).toEqual([]);
      expect(synced.deleted).toHaveLength(1);
    });

    it("calls a deployment gone only once it has refused for the whole window, with no pause or answer between", async () => {
      const app = { id: "refusing", url: "http://127.0.0.1:1/api/durable", sdk: "test", features: [], syncedAt: new Date(), version: "v1", deploymentUrl: "http://127.0.0.1:2/api/durable" };
      await store.syncApp(app, []);
      const windowMs = 1_000;
      const refused = () => store.deploymentRefused("refusing", "v1", app.deploymentUrl, windowMs, windowMs);
      const deployment = async () => (await store.listApps()).find((a) => a.id === "refusing")!.deployments!.find((d) => d.version === "v1")!;
      const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
      // Refusals half a window apart: gone once the first is a window old.
      expect(await refused()).toBe("counting");
      expect(await deployment()).toMatchObject({ gone: false, refusing: true });
      await sleep(windowMs / 2 + 50);
      expect(await refused()).toBe("counting");
      // An answer between: the count starts again.
      await store.deploymentAnswered("refusing", "v1", app.deploymentUrl);
      expect((await deployment()).refusing).toBeUndefined();
      await sleep(windowMs / 2 + 50);
      expect(await refused()).toBe("counting");
      // Registering the app again at the same URL (discovery does, every minute) is no answer: the count goes on.
      await store.syncApp(app, []);
      await sleep(windowMs / 2 + 50);
      expect(await refused()).toBe("counting");
      await sleep(windowMs / 2 + 50);
      expect(await refused()).toBe("gone");
      expect((await deployment()).gone).toBe(true);
      // No longer live: said so. Discovery registering the unchanged app again does not bring it
      // back; registering the version again does, with no count.
      expect(await refused()).toBe("not live");
      await store.syncApp(app, [], [], { revive: false });
      expect((await deployment()).gone).toBe(true);
      await store.syncApp(app, []);
      expect(await deployment()).toMatchObject({ gone: false });
      expect((await deployment()).refusing).toBeUndefined();
      expect(await refused()).toBe("counting");
      // A pause longer than the window between two refusals starts the count again: half a
      // window after the second, the count is half a window old, not a window and a half.
      await sleep(windowMs + 200);
      expect(await refused()).toBe("counting");
      await sleep(windowMs / 2 + 50);
      expect(await refused()).toBe("counting");
      expect((await deployment()).gone).toBe(false);
    });

    describe("optimistic apply", () => {
      const claimed = async () => {
        const { run, jobs } = await seedRun(store, [{ kind: "invoke" }]);
        const taken = (await store.queue.claim("w", 1_000, 60_000)).find((j) => j.id === jobs[0]!.id)!;
        const state = (await store.loadRunState(run.id))!;
        return { state, job: taken };
      };

      it("writes the whole change and deletes the job when run and lease are as read", async () => {
        const { state, job } = await claimed();
        const written = await store.applyOptimistically(state, { jobId: job.id, owner: "w" }, emptyChange({
          run: { status: "running" },
          steps: [step(state.run.id, "s")],
          jobs: [{ kind: "invoke", runId: state.run.id, lease: { owner: "w", leaseMs: 30_000 } }],
        }));
        expect(written).not.toBeNull();
        expect(written!.version).toBe(state.run.version + 1);
        expect(written!.deleted).toEqual([job.id]);
        expect(written!.continued?.id).toMatch(/^\d+$/);
        expect(written!.queued).toEqual([]);
        const now = (await store.loadRunState(state.run.id))!;
        expect([now.run.status, now.run.version, now.steps.map((s) => s.output)]).toEqual(["running", written!.version, [{ n: 1 }]]);
        // The continuation is leased to its worker: nobody else can claim it.
        expect((await store.queue.claim("other", 1_000, 1_000)).map((j) => j.id)).not.toContain(written!.continued!.id);
      });

      it("takes an unclaimed timer only while nobody holds it and it is due, on the store's clock", async () => {
        const soon = new Date(Date.now() + 400);
        const { run, jobs } = await seedRun(store, [{ kind: "wake", stepId: "nap", runAt: soon }]);
        const state = (await store.loadRunState(run.id))!;
        const fence = { jobId: jobs[0]!.id, owner: "w", unclaimed: true };
        const change = emptyChange({ steps: [step(run.id, "nap", { kind: "sleep" })] });
        // Not due yet: nothing written, the job stays.
        expect(await store.applyOptimistically(state, fence, change)).toBeNull();
        await new Promise((resolve) => setTimeout(resolve, 450));
        // Due, but another executor claimed it meanwhile: still nothing.
        const [taken] = (await store.queue.claim("other", 1_000, 60_000)).filter((j) => j.id === jobs[0]!.id);
        expect(taken).toBeDefined();
        expect(await store.applyOptimistically(state, fence, change)).toBeNull();
        expect(await store.listSteps(run.id)).toEqual([]);
        expect(await store.transaction((tx) => tx.completeJob(fence))).toBeNull();
        // Free again (given back) and due: taken and applied in the one statement, once.
        await store.queue.release(taken!, "other", { delayMs: 0 });
        const written = await store.applyOptimistically(state, fence, change);
        expect(written?.deleted).toEqual([jobs[0]!.id]);
        expect((await store.listSteps(run.id)).map((s) => s.id)).toEqual(["nap"]);
        expect(await store.applyOptimistically({ ...state, run: { ...state.run, version: written!.version } }, fence, change)).toBeNull();
      });

      it("writes nothing when the run changed since it was read", async () => {
        const { state, job } = await claimed();
        await store.transaction((tx) => tx.lockRun(state.run.id)); // someone else moved the run on
        const written = await store.applyOptimistically(state, { jobId: job.id, owner: "w" }, emptyChange({ steps: [step(state.run.id, "s")] }));
        expect(written).toBeNull();
        expect(await store.listSteps(state.run.id)).toEqual([]);
        expect((await store.transaction((tx) => tx.completeJob({ jobId: job.id, owner: "w" })))).not.toBeNull();
      });

      it("writes nothing when the job was completed by another worker, or is held by one", async () => {
        const { state, job } = await claimed();
        const stranger = await store.applyOptimistically(state, { jobId: job.id, owner: "stranger" }, emptyChange({ run: { status: "completed" } }));
        expect(stranger).toBeNull();
        await store.transaction((tx) => tx.completeJob({ jobId: job.id, owner: "w" }));
        const late = await store.applyOptimistically(state, { jobId: job.id, owner: "w" }, emptyChange({ run: { status: "completed" } }));
        expect(late).toBeNull();
        expect((await store.getRun(state.run.id))!.status).toBe("queued");
      });

      it("deletes the run's jobs by purpose, or all of them, and keeps one job per purpose", async () => {
        const later = new Date(Date.now() + 60_000);
        const { run, jobs } = await seedRun(store, [
          { kind: "wake", stepId: "nap", runAt: later },
          { kind: "wait-timeout", stepId: "ask", runAt: later },
          { kind: "wait-timeout", stepId: "ask", runAt: later }, // a second one for the same purpose is not written
        ]);
        expect(jobs).toHaveLength(2);
        const written = await store.transaction(async (tx) => {
          const locked = (await tx.lockRun(run.id))!;
          return tx.writeChange(run.id, locked.run.version, emptyChange({ dropJobs: [{ kind: "wait-timeout", stepId: "ask" }] }));
        });
        expect(written.deleted).toEqual([jobs[1]!.id]);
        const all = await store.transaction(async (tx) => {
          const locked = (await tx.lockRun(run.id))!;
          return tx.writeChange(run.id, locked.run.version, emptyChange({ dropJobs: "all", jobs: [{ kind: "wake", runId: run.id, stepId: "nap", runAt: later }] }));
        });
        // The replacement is written after the deletion, so the unique purpose does not swallow it.
        expect(all.deleted).toEqual([jobs[0]!.id]);
        expect(all.queued).toHaveLength(1);
      });
    });

    it("creates a burst of runs in one write, each with its jobs and matchers; a taken ID writes nothing of its run", async () => {
      const event = { id: uid("evt"), name: "a/b", data: {}, ts: 1 };
      const { run: existing } = await seedRun(store);
      const [leased, queued, bare] = [newRun(event.id), newRun(event.id), newRun(event.id)];
      const cancelOn = uid("user/deleted");
      const created = await store.transaction(async (tx) => {
        await tx.insertEvents([event]);
        return tx.insertRuns([
          { run: leased, change: emptyChange({ jobs: [{ kind: "invoke", runId: leased.id, lease: { owner: "me", leaseMs: 30_000 } }] }) },
          {
            run: queued,
            change: emptyChange({
              jobs: [{ kind: "invoke", runId: queued.id }],
              openMatchers: [{ runId: queued.id, stepId: "cancel:0", kind: "cancel", eventName: cancelOn }],
            }),
          },
          { run: bare },
          // Its ID is taken: nothing of this change may reach the existing run.
          { run: { ...existing, version: 0 }, change: emptyChange({ jobs: [{ kind: "wake", runId: existing.id, stepId: "x", runAt: new Date() }] }) },
        ]);
      });
      expect([...created.keys()].sort()).toEqual([leased.id, queued.id, bare.id].sort());
      expect(created.get(leased.id)).toMatchObject({ version: 0, queued: [], continued: { runId: leased.id, kind: "invoke" } });
      expect(created.get(queued.id)!.queued.map((job) => [job.runId, job.kind])).toEqual([[queued.id, "invoke"]]);
      expect(created.get(queued.id)!.continued).toBeUndefined();
      expect(created.get(bare.id)).toEqual({ version: 0, queued: [], deleted: [] });
      expect((await store.transaction((tx) => tx.findMatchers(cancelOn))).map((m) => [m.runId, m.stepId])).toEqual([[queued.id, "cancel:0"]]);
      // The leased job is its owner's; the queued one anyone's; the taken ID got no wake.
      expect((await store.queue.claim("other", 10, 30_000)).filter((job) => [leased.id, queued.id, existing.id].includes(job.runId)).map((job) => job.runId)).toEqual([queued.id]);
      expect((await store.loadRunState(bare.id))?.run).toMatchObject({ status: "queued", version: 0 });
      // A created run takes guarded changes from its version on.
      const state = (await store.loadRunState(queued.id))!;
      expect(await store.applyOptimistically(state, { jobId: created.get(queued.id)!.queued[0]!.id, owner: "other" }, emptyChange({ run: { status: "running" } }))).toMatchObject({ version: 1 });
    });

    it("finds matchers by event name; a frozen null matches null, a missing field matches nothing", async () => {
      const { run } = await seedRun(store);
      const eventName = uid("order/paid");
      await store.transaction(async (tx) => {
        const locked = (await tx.lockRun(run.id))!;
        await tx.writeChange(run.id, locked.run.version, emptyChange({
          openMatchers: [
            { runId: run.id, stepId: "w", kind: "wait", eventName, matchPath: "data.id", matchValue: null },
            { runId: run.id, stepId: "m", kind: "wait", eventName, matchPath: "data.id" },
            { runId: run.id, stepId: "cancel:0", kind: "cancel", eventName, ifExpr: "async.data.x == 1" },
          ],
        }));
      });
      const found = await store.transaction((tx) => tx.findMatchers(eventName));
      expect(found.map((m) => [m.stepId, m.kind, m.matchPath, m.matchValue, m.ifExpr])).toEqual([
        ["cancel:0", "cancel", undefined, undefined, "async.data.x == 1"],
        ["m", "wait", "data.id", undefined, undefined],
        ["w", "wait", "data.id", null, undefined],
      ]);
      await store.transaction(async (tx) => {
        const locked = (await tx.lockRun(run.id))!;
        await tx.writeChange(run.id, locked.run.version, emptyChange({ closeMatchers: ["w"] }));
      });
      expect((await store.transaction((tx) => tx.findMatchers(eventName))).map((m) => m.stepId)).toEqual(["cancel:0", "m"]);
    });

    it("finds the first accepted event of a name received in a window, past any number of others", async () => {
      const name = uid("reply");
      await store.transaction((tx) => tx.insertEvents([{ id: uid("e"), name, data: { n: -1 } , ts: 1 }]));
      await new Promise((resolve) => setTimeout(resolve, 20));
      const since = new Date();
      await new Promise((resolve) => setTimeout(resolve, 20));
      // More than a page of events that do not match, then two that do.
      const flood = Array.from({ length: 1_200 }, (_, n) => ({ id: uid("e"), name, data: { n }, ts: 1 }));
      await store.transaction((tx) => tx.insertEvents([...flood, { id: uid("e"), name, data: { n: "yes", first: true }, ts: 1 }, { id: uid("e"), name, data: { n: "yes" }, ts: 1 }]));
      const accept = (event: { data: unknown }) => (event.data as { n: unknown }).n === "yes";
      const found = await store.transaction(async (tx) => {
        await tx.lockWaits([name]);
        return tx.firstEventSince(name, since, undefined, accept);
      });
      expect(found?.data).toEqual({ n: "yes", first: true });
      // Before the window, or after its end: nothing.
      expect(await store.transaction((tx) => tx.firstEventSince(name, since, since, accept))).toBeNull();
      expect(await store.transaction((tx) => tx.firstEventSince(name, new Date(Date.now() + 60_000), undefined, () => true))).toBeNull();
    });

    it("reads only events whose stored data contains the pre-filter's text, and still lets accept decide", async () => {
      const name = uid("reply");
      const since = new Date(Date.now() - 1_000);
      // A NUL in another event's data: the filter works on the text, never a jsonb cast that would refuse it.
      await store.transaction((tx) =>
        tx.insertEvents([
          { id: uid("e"), name, data: { orderId: "o-1", note: "\u0000" }, ts: 1 },
          { id: uid("e"), name, data: { orderId: "o-2", pick: false }, ts: 1 },
          { id: uid("e"), name, data: { orderId: "o-2", pick: true }, ts: 1 },
        ]),
      );
      const seen: unknown[] = [];
      const accept = (event: { data: unknown }) => (seen.push(event.data), (event.data as { pick?: boolean }).pick === true);
      const found = await store.transaction((tx) => tx.firstEventSince(name, since, undefined, accept, JSON.stringify("o-2")));
      expect(found?.data).toEqual({ orderId: "o-2", pick: true });
      expect(seen).toEqual([{ orderId: "o-2", pick: false }, { orderId: "o-2", pick: true }]);
      expect(await store.transaction((tx) => tx.firstEventSince(name, since, undefined, () => true, JSON.stringify("o-3")))).toBeNull();
    });

    it("does not offer a matcher past its timeout", async () => {
      const { run } = await seedRun(store);
      const eventName = uid("late");
      await store.transaction(async (tx) => {
        const locked = (await tx.lockRun(run.id))!;
        await tx.writeChange(run.id, locked.run.version, emptyChange({
          openMatchers: [
            { runId: run.id, stepId: "past", kind: "wait", eventName, expiresAt: new Date(Date.now() - 1_000) },
            { runId: run.id, stepId: "open", kind: "wait", eventName, expiresAt: new Date(Date.now() + 60_000) },
          ],
        }));
      });
      expect((await store.transaction((tx) => tx.findMatchers(eventName))).map((m) => m.stepId)).toEqual(["open"]);
    });

    it("finds live runs with no job, and not runs that have one or have ended", async () => {
      const { run: stranded } = await seedRun(store);
      const { run: busy } = await seedRun(store, [{ kind: "invoke" }]);
      // Waiting for a child it invoked: no job until the child ends, and not stranded.
      const { run: parent } = await seedRun(store);
      await store.transaction(async (tx) => {
        const locked = (await tx.lockRun(parent.id))!;
        await tx.writeChange(parent.id, locked.run.version, emptyChange({ steps: [step(parent.id, "child", { kind: "invoke", status: "invoking", output: undefined })] }));
      });
      const found = await store.findStrandedRuns(0, 1_000);
      expect(found).toContain(stranded.id);
      expect(found).not.toContain(busy.id);
      expect(found).not.toContain(parent.id);
      expect(await store.findStrandedRuns(3_600_000, 1_000)).not.toContain(stranded.id);
    });

    it("prunes finished runs and unreferenced events past the retention age, and keeps live runs and their events", async () => {
      const { run: done } = await seedRun(store);
      const { run: live } = await seedRun(store, [{ kind: "invoke" }]);
      const orphan = uid("evt");
      await store.transaction(async (tx) => {
        await tx.insertEvents([{ id: orphan, name: "a/b", data: {}, ts: 1 }]);
        const locked = (await tx.lockRun(done.id))!;
        await tx.writeChange(done.id, locked.run.version, emptyChange({ run: { status: "completed", endedAt: new Date() }, steps: [step(done.id, "s")] }));
      });
      expect(await store.prune(3_600_000, 100)).toEqual({ runs: 0, events: 0 });
      await new Promise((resolve) => setTimeout(resolve, 30));
      let total = { runs: 0, events: 0 };
      for (let pruned = await store.prune(10, 2); pruned.runs + pruned.events > 0; pruned = await store.prune(10, 2)) {
        total = { runs: total.runs + pruned.runs, events: total.events + pruned.events };
      }
      expect(total.runs).toBeGreaterThanOrEqual(1);
      expect(await store.getRun(done.id)).toBeNull();
      expect(await store.listSteps(done.id)).toEqual([]);
      expect(await store.getEvent(done.eventId)).toBeNull();
      expect(await store.getEvent(orphan)).toBeNull();
      expect(await store.getRun(live.id)).not.toBeNull();
      expect(await store.getEvent(live.eventId)).not.toBeNull();
    });

    it("commits a checkpoint only for the claim that holds the invocation's lease, once per step, while the run lives", async () => {
      const { run } = await seedRun(store, [{ kind: "invoke" }]);
      const [job] = (await store.queue.claim("worker-a", 100, 30_000)).filter((j) => j.runId === run.id);
      const lease = { jobId: job!.id, owner: "worker-a", claims: job!.claims };
      const write = (id: string, fields: Partial<Parameters<Store["checkpoint"]>[0]> = {}) =>
        store.checkpoint({ runId: run.id, functionId: run.functionId, lease, leaseMs: 30_000, step: step(run.id, id, { position: Number(id.slice(1)) }), bytes: 7, maxRunStateBytes: 1_000, ...fields });

      expect(await write("s0")).toEqual({ ok: true, wasQueued: true, version: run.version + 1 });
      expect(await write("s1")).toEqual({ ok: true, wasQueued: false, version: run.version + 2 });
      expect(await store.getRun(run.id)).toMatchObject({ status: "running", stateBytes: 14, version: run.version + 2 });
      // The same step again (a replayed or late checkpoint): refused, the first result stays.
      expect(await write("s0", { step: step(run.id, "s0", { output: "other" }) })).toEqual({ ok: false, refused: "step-stored" });
      expect((await store.listSteps(run.id)).map((s) => [s.id, s.output])).toEqual([["s0", { n: 1 }], ["s1", { n: 1 }]]);
      // Another holder, another claim of the same job, another run's function: not this invocation.
      expect(await write("s2", { lease: { ...lease, owner: "worker-b" } })).toEqual({ ok: false, refused: "lease-lost" });
      expect(await write("s2", { lease: { ...lease, claims: lease.claims + 1 } })).toEqual({ ok: false, refused: "lease-lost" });
      expect(await write("s2", { functionId: "app-other" })).toEqual({ ok: false, refused: "lease-lost" });
      expect(await write("s2", { bytes: 990 })).toEqual({ ok: false, refused: "limit" });
      expect((await store.listSteps(run.id)).map((s) => s.id)).toEqual(["s0", "s1"]);

      // The run ends (a cancel deletes its jobs): nothing more is accepted.
      await store.transaction(async (tx) => {
        const locked = await tx.lockRun(run.id);
        await tx.writeChange(run.id, locked!.run.version, emptyChange({ run: { status: "cancelled", endedAt: new Date() }, dropJobs: "all" }));
      });
      expect(await write("s2")).toEqual({ ok: false, refused: "run-ended" });
      expect((await store.listSteps(run.id)).map((s) => s.id)).toEqual(["s0", "s1"]);
    });

    it("gives checkpoints sent together, of many runs and several of one run, each the outcome it would have alone", async () => {
      const seeded = await Promise.all(Array.from({ length: 6 }, () => seedRun(store, [{ kind: "invoke" }])));
      const ids = new Set(seeded.map(({ run }) => run.id));
      const jobs = new Map((await store.queue.claim("worker-a", 100, 30_000)).filter((j) => ids.has(j.runId)).map((j) => [j.runId, j]));
      const [ok, stored, ended, stolen, full, busy] = seeded.map(({ run }) => run);
      const write = (run: RunRecord, id: string, fields: Partial<Parameters<Store["checkpoint"]>[0]> = {}) => {
        const job = jobs.get(run.id)!;
        return store.checkpoint({
          runId: run.id,
          functionId: run.functionId,
          lease: { jobId: job.id, owner: "worker-a", claims: job.claims },
          leaseMs: 30_000,
          step: step(run.id, id, { position: Number(id.slice(1)) }),
          bytes: 7,
          maxRunStateBytes: 1_000,
          ...fields,
        });
      };
      await write(stored!, "s0");
      await store.transaction(async (tx) => {
        const locked = await tx.lockRun(ended!.id);
        await tx.writeChange(ended!.id, locked!.run.version, emptyChange({ run: { status: "cancelled", endedAt: new Date() }, dropJobs: "all" }));
      });
      // All at once: the first goes alone, the rest gather behind it into statements of their own.
      const results = await Promise.all([
        write(ok!, "s0"),
        write(stored!, "s0", { step: step(stored!.id, "s0", { output: "other" }) }),
        write(ended!, "s0"),
        write(stolen!, "s0", { lease: { jobId: jobs.get(stolen!.id)!.id, owner: "worker-b", claims: 1 } }),
        write(full!, "s0", { bytes: 1_001 }),
        // Three steps of one run in a row, as an invocation going on sends them.
        write(busy!, "s0"),
        write(busy!, "s1"),
        write(busy!, "s2"),
      ]);
      expect(results).toEqual([
        { ok: true, wasQueued: true, version: ok!.version + 1 },
        { ok: false, refused: "step-stored" },
        { ok: false, refused: "run-ended" },
        { ok: false, refused: "lease-lost" },
        { ok: false, refused: "limit" },
        { ok: true, wasQueued: true, version: busy!.version + 1 },
        { ok: true, wasQueued: false, version: busy!.version + 2 },
        { ok: true, wasQueued: false, version: busy!.version + 3 },
      ]);
      expect((await store.listSteps(stored!.id)).map((s) => [s.id, s.output])).toEqual([["s0", { n: 1 }]]);
      for (const run of [ended!, stolen!, full!]) expect(await store.listSteps(run.id)).toEqual([]);
      expect(await store.getRun(busy!.id)).toMatchObject({ status: "running", stateBytes: 21, version: busy!.version + 3 });
      expect((await store.listSteps(busy!.id)).map((s) => s.id)).toEqual(["s0", "s1", "s2"]);
    });

    it("stores a checkpoint's step with the times the executor gave it, alone and sent together", async () => {
      // The executor applies the invocation's answer to a snapshot holding these times: the
      // store's own clock, read when the checkpoint's commit came round, was later than that.
      const seeded = await Promise.all(Array.from({ length: 5 }, () => seedRun(store, [{ kind: "invoke" }])));
      const ids = new Set(seeded.map(({ run }) => run.id));
      const jobs = new Map((await store.queue.claim("worker-a", 100, 30_000)).filter((j) => ids.has(j.runId)).map((j) => [j.runId, j]));
      const times = (n: number) => ({ startedAt: new Date(Date.UTC(2020, 0, 1, 0, 0, n)), endedAt: new Date(Date.UTC(2020, 0, 1, 0, 0, n, 250)) });
      // The first ones go alone; those behind them gather into one statement.
      const results = await Promise.all(
        seeded.map(({ run }, n) => {
          const job = jobs.get(run.id)!;
          const lease = { jobId: job.id, owner: "worker-a", claims: job.claims };
          return store.checkpoint({ runId: run.id, functionId: run.functionId, lease, leaseMs: 30_000, step: step(run.id, "s0", times(n)), bytes: 7, maxRunStateBytes: 1_000 });
        }),
      );
      expect(results.map((result) => result.ok)).toEqual([true, true, true, true, true]);
      for (const [n, { run }] of seeded.entries()) {
        const [stored] = await store.listSteps(run.id);
        expect({ startedAt: stored!.startedAt, endedAt: stored!.endedAt }).toEqual(times(n));
      }
    });

    it("fails only the checkpoint whose value the store refuses when it was sent with others", async () => {
      const seeded = await Promise.all(Array.from({ length: 4 }, () => seedRun(store, [{ kind: "invoke" }])));
      const ids = new Set(seeded.map(({ run }) => run.id));
      const jobs = new Map((await store.queue.claim("worker-a", 100, 30_000)).filter((j) => ids.has(j.runId)).map((j) => [j.runId, j]));
      const write = (run: RunRecord, position: number) =>
        store.checkpoint({
          runId: run.id,
          functionId: run.functionId,
          lease: { jobId: jobs.get(run.id)!.id, owner: "worker-a", claims: 1 },
          leaseMs: 30_000,
          step: step(run.id, "s", { position }),
          bytes: 7,
          maxRunStateBytes: 1_000,
        });
      const [a, b, bad, d] = seeded.map(({ run }) => run);
      // The first two go alone; the last two, together. A position past Postgres's integer is a value it can never take.
      const results = await Promise.allSettled([write(a!, 0), write(b!, 0), write(bad!, 2 ** 31), write(d!, 0)]);
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled"]);
      expect(await store.listSteps(d!.id)).toHaveLength(1);
      expect(await store.listSteps(bad!.id)).toEqual([]);
    });

    it("refuses a checkpoint once the invocation's lease ran out, even before anyone else claims the job", async () => {
      const { run } = await seedRun(store, [{ kind: "invoke" }]);
      const [job] = (await store.queue.claim("worker-a", 100, 50)).filter((j) => j.runId === run.id);
      await new Promise((resolve) => setTimeout(resolve, 120));
      const result = await store.checkpoint({
        runId: run.id, functionId: run.functionId, lease: { jobId: job!.id, owner: "worker-a", claims: job!.claims }, leaseMs: 30_000,
        step: step(run.id, "s0"), bytes: 7, maxRunStateBytes: 1_000,
      });
      expect(result).toEqual({ ok: false, refused: "lease-lost" });
      expect(await store.listSteps(run.id)).toEqual([]);
    });
  });
}

/**
 * The queue contract, on a store whose `queue` is the adapter under test. Jobs go in and out
 * the way the engine moves them: written with a change, then announced after the commit;
 * completed by the commit that deletes them, then forgotten.
 */
export function testQueue(name: string, open: Open): void {
  describe(`queue contract: ${name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;

    beforeAll(async () => {
      ({ store, cleanup } = await open());
      await store.migrate();
    });
    afterAll(async () => cleanup?.());

    const complete = async (jobId: string, owner: string) => {
      const done = await store.transaction((tx) => tx.completeJob({ jobId, owner }));
      if (done) await store.queue.afterCommit({ queued: [], deleted: [jobId] });
      return done !== null;
    };

    const drain = async () => {
      // Other tests' jobs may be due: claim everything so each test starts from an empty queue.
      while ((await store.queue.claim("drain", 100, 3_600_000)).length > 0);
    };

    it("claims due jobs once, not future ones; a job is completed exactly once, by its holder", async () => {
      await drain();
      const { jobs } = await seedRun(store, [{ kind: "invoke" }, { kind: "wake", stepId: "s", delayMs: 60_000 }]);
      const [due, later] = jobs as [JobRecord, JobRecord];
      expect(later.runAt.getTime() - due.runAt.getTime()).toBeGreaterThan(50_000);
      const [a, b] = await Promise.all([store.queue.claim("w1", 10, 10_000), store.queue.claim("w2", 10, 10_000)]);
      const claimed = [...a, ...b];
      expect(claimed.map((j) => [j.id, j.kind, j.stepId, j.claims])).toEqual([[due.id, "invoke", undefined, 1]]);
      const owner = a.length ? "w1" : "w2";
      expect(await complete(due.id, owner === "w1" ? "w2" : "w1")).toBe(false);
      expect(await complete(due.id, owner)).toBe(true);
      expect(await complete(due.id, owner)).toBe(false);
      const next = await store.queue.nextDueIn();
      expect(next).toBeGreaterThan(50_000);
      expect(next).toBeLessThanOrEqual(60_000);
    });

    it("hands out no first invocation while an event joining its batch holds it; once claimed, the next event opens a batch", async () => {
      await drain();
      const { run, jobs } = await seedRun(store, [{ kind: "invoke" }]);
      const later = await seedRun(store, [{ kind: "invoke", delayMs: 60_000 }]);
      const place = (runId: string, eventId: string) => (tx: Parameters<Parameters<Store["transaction"]>[0]>[0]) =>
        tx.placeInBatch({ functionId: `app-qb-${name}`, key: "k", runId, eventId, bytes: 10, maxSize: 10, maxBytes: 1_000 }, () => undefined);
      const mine = (claimed: JobRecord[]) => claimed.some((job) => job.id === jobs[0]!.id);
      expect(await store.transaction(place(run.id, "e0"))).toEqual({ runId: run.id, size: 1, full: false });
      let duringHold: Promise<{ jobs: JobRecord[]; at: number }> | undefined;
      let committedAt = 0;
      await store.transaction(async (tx) => {
        expect(await place("run-not-written", "e1")(tx)).toEqual({ runId: run.id, size: 2, full: false });
        // A claim meanwhile skips the job (the record's claim) or waits for the commit (a lease of what Redis handed out).
        duringHold = store.queue.claim("w", 10, 10_000).then((claimed) => ({ jobs: claimed, at: Date.now() }));
        await new Promise((resolve) => setTimeout(resolve, 200));
        committedAt = Date.now();
      });
      const held = await duringHold!;
      if (mine(held.jobs)) expect(held.at).toBeGreaterThanOrEqual(committedAt);
      let claimed = mine(held.jobs);
      for (let i = 0; i < 20 && !claimed; i++) claimed = mine(await store.queue.claim("w", 10, 10_000));
      expect(claimed).toBe(true);
      // Its run is out with a worker now: the next event opens another batch.
      expect(await store.transaction(place(later.run.id, "e2"))).toEqual({ runId: later.run.id, size: 1, full: false });
    });

    it("lets another worker take a job whose lease ran out, and not before", async () => {
      await drain();
      const { jobs } = await seedRun(store, [{ kind: "wake", stepId: "nap" }]);
      const [job] = await store.queue.claim("dead", 1, 150);
      expect(job).toMatchObject({ id: jobs[0]!.id, kind: "wake", stepId: "nap" });
      expect(await store.queue.claim("alive", 1, 10_000)).toEqual([]);
      await new Promise((r) => setTimeout(r, 300));
      const [again] = await store.queue.claim("alive", 1, 10_000);
      expect(again?.id).toBe(job!.id);
      expect(again?.claims).toBe(2);
      // The worker that stalled and came back finds the job taken: its result is dropped.
      expect(await complete(job!.id, "dead")).toBe(false);
      expect(await complete(job!.id, "alive")).toBe(true);
    });

    it("extends leases by heartbeat, releases jobs for later, and counts failures", async () => {
      await drain();
      await seedRun(store, [{ kind: "invoke" }]);
      const [job] = await store.queue.claim("w", 1, 150);
      await store.queue.extendLeases([job!.id], "w", 10_000);
      await store.queue.extendLeases([job!.id], "not-the-owner", 1);
      await new Promise((r) => setTimeout(r, 300));
      expect(await store.queue.claim("thief", 1, 10_000)).toEqual([]);
      await store.queue.release(job!, "not-the-owner", { delayMs: 0 });
      expect(await store.queue.claim("thief", 1, 10_000)).toEqual([]);
      await store.queue.release(job!, "w", { delayMs: 200, failure: "TypeError: boom" });
      expect(await store.queue.claim("x", 1, 10_000)).toEqual([]);
      await new Promise((r) => setTimeout(r, 300));
      const [back] = await store.queue.claim("x", 1, 10_000);
      expect(back).toMatchObject({ id: job!.id, failures: 1, lastError: "TypeError: boom" });
    });

    it("keeps when a job first became due, however often it is given back and delayed", async () => {
      await drain();
      const before = Date.now();
      const { jobs } = await seedRun(store, [{ kind: "invoke" }]);
      const [job] = await store.queue.claim("w", 1, 10_000);
      expect(job?.id).toBe(jobs[0]!.id);
      await store.queue.release(job!, "w", { delayMs: 300 });
      await new Promise((r) => setTimeout(r, 400));
      const [again] = await store.queue.claim("w", 1, 10_000);
      const done = await store.transaction((tx) => tx.completeJob({ jobId: again!.id, owner: "w" }));
      expect(done!.readyAt.getTime()).toBeLessThan(before + 250);
    });

    it("hands a job written with a lease straight to its owner, and to others once the lease runs out", async () => {
      await drain();
      const { jobs } = await seedRun(store, [{ kind: "invoke", lease: { owner: "me", leaseMs: 200 } }]);
      expect(await store.queue.claim("other", 10, 10_000)).toEqual([]);
      await new Promise((r) => setTimeout(r, 300));
      // A queue outside the record learns of an abandoned continuation when it reconciles.
      await store.queue.reconcile();
      expect((await store.queue.claim("other", 10, 10_000)).map((j) => j.id)).toEqual([jobs[0]!.id]);
      expect(await complete(jobs[0]!.id, "other")).toBe(true);
    });

    it("gives 50 jobs to 5 concurrent claimers with no job claimed twice", async () => {
      await drain();
      for (let i = 0; i < 10; i++) await seedRun(store, Array.from({ length: 5 }, (_, n) => ({ kind: "invoke" as const, stepId: `b${n}` })));
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

    describe("concurrency limits", () => {
      const slots = (...limits: Array<[key: string, limit: number]>) => limits.map(([key, limit]) => ({ key, limit }));
      /** A run whose invocation carries `concurrency`, queued; its job. */
      const waiting = async (concurrency: ReturnType<typeof slots>) => (await seedRun(store, [{ kind: "invoke", concurrency }])).jobs[0]!;
      /** Completes the job as an invocation that ended without a continuation does, and frees its slots: how many keys that made due. */
      const finish = async (job: JobRecord, owner: string) => {
        expect(await complete(job.id, owner)).toBe(true);
        return store.queue.slotsFreed((job.concurrency ?? []).map((slot) => slot.key));
      };

      it("grants a key's slots up to its limit across concurrent claimers, then one per slot freed, in order", async () => {
        await drain();
        const key = uid("key");
        const jobs = [];
        for (let i = 0; i < 5; i++) jobs.push(await waiting(slots([key, 2])));
        const claims = await Promise.all(["w1", "w2", "w3"].map(async (owner) => ({ owner, jobs: await store.queue.claim(owner, 10, 10_000) })));
        const held = claims.flatMap(({ owner, jobs }) => jobs.map((job) => ({ owner, job })));
        expect(held.map(({ job }) => job.id).sort()).toEqual([jobs[0]!.id, jobs[1]!.id].sort());
        expect(held[0]!.job.concurrency).toEqual(slots([key, 2]));
        // Full: nothing is due for a while, so an idle executor does not spin on the waiting jobs.
        expect(await store.queue.claim("w4", 10, 10_000)).toEqual([]);
        expect(await store.queue.nextDueIn()).toBeGreaterThan(0);
        expect(await finish(held[0]!.job, held[0]!.owner)).toBe(1);
        expect(await store.queue.nextDueIn()).toBe(0);
        expect((await store.queue.claim("w4", 10, 10_000)).map((job) => job.id)).toEqual([jobs[2]!.id]);
        expect(await store.queue.claim("w5", 10, 10_000)).toEqual([]);
      });

      it("a freed slot reports its key due while invocations wait on it, even when another claim left it due", async () => {
        await drain();
        const key = uid("key");
        for (let i = 0; i < 3; i++) await waiting(slots([key, 3]));
        // A claim out of room leaves the key due, with two jobs waiting and slots free.
        const [job] = await store.queue.claim("a", 1, 10_000);
        expect(job?.concurrency).toEqual(slots([key, 3]));
        expect(await finish(job!, "a")).toBeGreaterThan(0);
        expect(await store.queue.claim("b", 10, 10_000)).toHaveLength(2);
      });

      it("a freed slot makes its key due only when an invocation waits on it (the executor wakes its claims then alone)", async () => {
        await drain();
        const key = uid("key");
        await waiting(slots([key, 2]));
        const [job] = await store.queue.claim("w", 10, 10_000);
        // Room to spare and nothing waiting: nothing to make due.
        expect(await finish(job!, "w")).toBe(0);
      });

      it("a continuation keeps its slot, even once its lease ran out, until a claim takes it again; a release frees it", async () => {
        await drain();
        const key = uid("key");
        const first = await waiting(slots([key, 1]));
        const second = await waiting(slots([key, 1]));
        const [claimed] = await store.queue.claim("w", 10, 10_000);
        expect(claimed?.id).toBe(first.id);
        // The invocation's commit deletes it and writes the next one leased to the same worker.
        const next = await store.transaction(async (tx) => {
          expect(await tx.completeJob({ jobId: first.id, owner: "w" })).not.toBeNull();
          const state = (await tx.lockRun(first.runId))!;
          return tx.writeChange(first.runId, state.run.version, emptyChange({ jobs: [{ kind: "invoke", runId: first.runId, lease: { owner: "w", leaseMs: 200 }, concurrency: slots([key, 1]) }] }));
        });
        expect(next.continued?.concurrency).toEqual(slots([key, 1]));
        await store.queue.slotsFreed([key]); // even told, a continuation's slot stays taken
        expect(await store.queue.claim("other", 10, 10_000)).toEqual([]);
        // Its lease runs out (its executor died, or stalls): the claim after a reconcile takes that
        // job again, which costs no slot, before the other waiting one.
        await new Promise((resolve) => setTimeout(resolve, 300));
        await store.queue.reconcile();
        const [taken, more] = await store.queue.claim("other", 10, 10_000);
        expect(taken?.id).toBe(next.continued!.id);
        expect(more).toBeUndefined();
        // The stalled worker comes back: its heartbeat no longer holds the job, nor does its slot count twice.
        await store.queue.extendLeases([taken!.id], "w", 60_000);
        expect(await store.queue.claim("third", 10, 10_000)).toEqual([]);
        // Given back for later, it frees its slot for the other job at once.
        await store.queue.release(taken!, "other", { delayMs: 60_000 });
        const [rest] = await store.queue.claim("third", 10, 10_000);
        expect(rest?.id).not.toBe(taken!.id);
        expect(rest?.concurrency).toEqual(slots([key, 1]));
      });

      it("a run that ends keeps the invocation out with a slot until its worker is done with it; its other jobs go", async () => {
        await drain();
        const key = uid("key");
        const { run, jobs } = await seedRun(store, [
          { kind: "invoke", stepId: "a", concurrency: slots([key, 1]) },
          { kind: "invoke", stepId: "b", concurrency: slots([key, 1]) },
          { kind: "wake", stepId: "nap", delayMs: 60_000 },
        ]);
        const [out] = await store.queue.claim("w", 10, 10_000);
        expect(out?.stepId).toBe("a");
        // The run is cancelled while step "a" runs in the app.
        const ended = await store.transaction(async (tx) => {
          const state = (await tx.lockRun(run.id))!;
          return tx.writeChange(run.id, state.run.version, emptyChange({ run: { status: "cancelled", endedAt: new Date() }, dropJobs: "all" }));
        });
        expect(ended.deleted.sort()).toEqual(jobs.filter((job) => job.stepId !== "a").map((job) => job.id).sort());
        await store.queue.afterCommit({ queued: [], deleted: ended.deleted });
        // Its slot stays taken: another run of the key waits, until the worker deletes the job.
        const other = await waiting(slots([key, 1]));
        expect(await store.queue.claim("x", 10, 10_000)).toEqual([]);
        await finish(out!, "w");
        expect((await store.queue.claim("x", 10, 10_000)).map((job) => job.id)).toEqual([other.id]);
      });

      it("a job held back by its other key does not hide the jobs behind it that can go", async () => {
        await drain();
        const [shared, own] = [uid("shared"), uid("own")];
        const running = await waiting(slots([own, 1], [shared, 5]));
        const [held] = await store.queue.claim("w", 1, 10_000);
        expect(held?.id).toBe(running.id);
        // A backlog of its function (its own key full) comes first in the shared key's order.
        for (let i = 0; i < 4; i++) await waiting(slots([own, 1], [shared, 5]));
        const other = await waiting(slots([shared, 5]));
        expect((await store.queue.claim("x", 2, 10_000)).map((job) => job.id)).toEqual([other.id]);
      });

      it("a job with two limits runs only while both have room", async () => {
        await drain();
        const [shared, own] = [uid("shared"), uid("own")];
        const alone = await waiting(slots([shared, 1]));
        const both = await waiting(slots([own, 5], [shared, 1]));
        const claimed = await store.queue.claim("w", 10, 10_000);
        expect(claimed.map((job) => job.id)).toEqual([alone.id]);
        expect(await store.queue.claim("w", 10, 10_000)).toEqual([]);
        await finish(alone, "w");
        expect((await store.queue.claim("w", 10, 10_000)).map((job) => job.id)).toEqual([both.id]);
      });

      it("claims waiting invocations of many keys, each up to its limit, beside plain jobs", async () => {
        await drain();
        const keys = Array.from({ length: 20 }, () => uid("many"));
        for (const key of keys) for (let i = 0; i < 3; i++) await waiting(slots([key, 2]));
        const plain = await seedRun(store, [{ kind: "invoke" }]);
        const taken: JobRecord[] = [];
        for (let round = 0; round < 10; round++) taken.push(...(await store.queue.claim(`w${round}`, 7, 10_000)));
        expect(taken).toHaveLength(41);
        expect(taken.map((job) => job.id)).toContain(plain.jobs[0]!.id);
        const perKey = new Map<string, number>();
        for (const job of taken) for (const slot of job.concurrency ?? []) perKey.set(slot.key, (perKey.get(slot.key) ?? 0) + 1);
        expect([...perKey.values()]).toEqual(keys.map(() => 2));
      });
    });

    it("after releaseAllLeases every leased job is claimable at once", async () => {
      await drain();
      const { jobs } = await seedRun(store, [{ kind: "invoke" }]);
      await store.queue.claim("crashed", 1, 3_600_000);
      await store.queue.releaseAllLeases();
      // Earlier tests' drained jobs are released too; ours must be among them.
      expect((await store.queue.claim("restarted", 1_000, 10_000)).map((j) => j.id)).toContain(jobs[0]!.id);
    });
  });
}
