import { describe, expect, it } from "vitest";
import { LeaseLostError } from "../src/errors.ts";
import type { Logger } from "../src/log.ts";
import type { JobRecord } from "../src/records.ts";
import { Lanes, type LanesOptions } from "../src/runtime/lanes.ts";
import type { Queue } from "../src/store.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const job = (id: string, fields: Partial<JobRecord> = {}): JobRecord => ({ id, kind: "invoke", runId: `run-${id}`, runAt: new Date(), claims: 1, failures: 0, ...fields });

/** An in-memory queue that records what the lanes do to it. */
function memoryQueue(initial: JobRecord[] = []) {
  const due = [...initial];
  const calls = { claims: 0, releases: [] as Array<{ id: string; delayMs: number; failure?: string }>, extends: 0 };
  const queue: Queue = {
    async claim(_owner, limit) {
      calls.claims++;
      return due.splice(0, limit);
    },
    async extendLeases() {
      calls.extends++;
    },
    async release(released, _owner, options) {
      calls.releases.push({ id: released.id, ...options });
    },
    async afterCommit() {},
    async slotsFreed() {
      return 0;
    },
    async nextDueIn() {
      return due.length > 0 ? 0 : null;
    },
    async reconcile() {
      return 0;
    },
    async releaseAllLeases() {},
  };
  return { queue, due, calls };
}

function logger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (l) => lines.push(l), warn: (l) => lines.push(`WARN ${l}`), error: (l) => lines.push(`ERROR ${l}`) };
}

function lanes(queue: Queue, handle: LanesOptions["handle"], options: Partial<LanesOptions> = {}) {
  const log = logger();
  return { log, lanes: new Lanes({ queue, owner: "w", concurrency: 2, leaseMs: 30_000, pollMs: 1_000, log, handle, ...options }) };
}

/** A handler whose jobs block until released, one by one. */
function blockingHandler() {
  const started: string[] = [];
  const waiting: Array<() => void> = [];
  return {
    started,
    finishOne: () => waiting.shift()?.(),
    handle: async (j: JobRecord) => {
      started.push(j.id);
      await new Promise<void>((resolve) => waiting.push(resolve));
      return [];
    },
  };
}

describe("Lanes", () => {
  it("with every slot busy, work queued meanwhile causes no claims and no spinning; a freed slot claims at once", async () => {
    const { queue, due, calls } = memoryQueue(Array.from({ length: 10 }, (_, i) => job(String(i))));
    const blocking = blockingHandler();
    const { lanes: l } = lanes(queue, blocking.handle);
    l.start();
    await sleep(20);
    expect(blocking.started).toEqual(["0", "1"]);
    const claimsWhenFull = calls.claims;
    // A burst of jobs queued by this process while both slots are busy.
    const before = Date.now();
    for (let i = 0; i < 1_000; i++) l.notify();
    await sleep(100);
    // The event loop stayed responsive (a spinning loop would starve this timer) and nothing was claimed.
    expect(Date.now() - before).toBeLessThan(1_000);
    expect(calls.claims).toBe(claimsWhenFull);
    blocking.finishOne();
    await sleep(20);
    expect(blocking.started).toEqual(["0", "1", "2"]);
    expect(due).toHaveLength(7);
    for (let i = 0; i < 10; i++) blocking.finishOne();
    await l.stop(0);
  });

  it("does not lose a notification that arrives while it is claiming", async () => {
    let releaseClaim: (() => void) | undefined;
    const jobs: JobRecord[] = [];
    const { queue } = memoryQueue();
    queue.claim = async () => {
      // What the claim sees is fixed when it starts, as a database statement's snapshot is.
      const seen = jobs.splice(0);
      await new Promise<void>((resolve) => (releaseClaim = resolve));
      return seen;
    };
    const handled: string[] = [];
    const { lanes: l } = lanes(queue, async (j) => (handled.push(j.id), []), { pollMs: 60_000 });
    l.start();
    await sleep(5);
    jobs.push(job("1"));
    l.notify(); // announced while the first claim (which saw nothing) is still on its way
    releaseClaim!();
    await sleep(5);
    releaseClaim!(); // the second claim happens at once and finds the job
    await sleep(5);
    expect(handled).toEqual(["1"]);
    const stopping = l.stop(0);
    releaseClaim!();
    await stopping;
  });

  it("runs a continuation in the same lane, without a claim", async () => {
    const { queue, calls } = memoryQueue([job("a")]);
    const handled: string[] = [];
    const { lanes: l } = lanes(queue, async (j) => {
      handled.push(j.id);
      return j.id === "a" ? [job("a2")] : [];
    });
    const result = await l.drain({ budgetMs: 5_000 });
    expect(handled).toEqual(["a", "a2"]);
    expect(result).toMatchObject({ ran: 2, failed: 0, stoppedEarly: false, nextDueIn: null });
    expect(calls.claims).toBeLessThanOrEqual(3);
  });

  it("gives a failed job back with growing backoff and its cause; a lost lease is dropped quietly", async () => {
    const { queue, calls } = memoryQueue([job("a", { failures: 2 }), job("b")]);
    const { lanes: l, log } = lanes(queue, async (j) => {
      if (j.id === "a") throw new TypeError("cannot read x");
      throw new LeaseLostError(j.id);
    });
    const result = await l.drain({ budgetMs: 5_000 });
    expect(result.failed).toBe(1);
    expect(calls.releases).toEqual([{ id: "a", delayMs: 2_000, failure: "TypeError: cannot read x" }]);
    expect(log.lines.find((line) => line.startsWith("WARN"))).toMatch(/job a \(invoke of run run-a\) failed in the executor \(failure 3\): TypeError: cannot read x; retrying in 2\.0s/);
  });

  it("pauses through a store outage, says so once, and says when it is back", async () => {
    const { queue } = memoryQueue();
    let down = 3;
    const claim = queue.claim.bind(queue);
    queue.claim = async (...args) => {
      if (down-- > 0) throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
      return claim(...args);
    };
    const { lanes: l, log } = lanes(queue, async () => [], { pollMs: 20 });
    l.start();
    await sleep(2_000);
    await l.stop(0);
    expect(log.lines.filter((line) => line.startsWith("ERROR store unavailable"))).toHaveLength(1);
    expect(log.lines.some((line) => /store reachable again after .* \(3 failed attempts\)/.test(line))).toBe(true);
  });

  it("stop waits for running jobs up to the grace period, then gives them back", async () => {
    const { queue, calls } = memoryQueue([job("slow")]);
    const { lanes: l } = lanes(queue, () => new Promise(() => {}));
    l.start();
    await sleep(20);
    const started = Date.now();
    await l.stop(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(calls.releases).toEqual([{ id: "slow", delayMs: 0 }]);
  });

  it("a drain never starts more than maxJobs and hands back the continuation it will not run", async () => {
    const { queue, calls } = memoryQueue([job("a"), job("b"), job("c")]);
    const { lanes: l } = lanes(queue, async (j) => [job(`${j.id}+`)], { concurrency: 4 });
    const result = await l.drain({ budgetMs: 5_000, maxJobs: 2 });
    expect(result).toMatchObject({ ran: 2, stoppedEarly: true });
    expect(calls.releases.map((r) => r.id).sort()).toEqual(["a+", "b+"]);
  });

  it("a drain stays within maxJobs while continuations start during a claim", async () => {
    let claims = 0;
    const { queue } = memoryQueue();
    queue.claim = async (_owner, limit) => {
      claims++;
      if (claims === 1) return [job("a")];
      await sleep(60);
      return Array.from({ length: limit }, (_, i) => job(`c${claims}-${i}`));
    };
    let started = 0;
    let k = 0;
    const { lanes: l } = lanes(queue, async (j) => {
      started++;
      await sleep(10);
      return j.id === "a" || j.id.startsWith("k") ? [job(`k${k++}`)] : [];
    }, { pollMs: 5 });
    const result = await l.drain({ budgetMs: 10_000, maxJobs: 4 });
    expect(started).toBeLessThanOrEqual(4);
    expect(result.stoppedEarly).toBe(true);
  });

  it("jobs a claim brings back after stop() are given back, not run", async () => {
    let ranAfterStop = 0;
    let stopped = false;
    const { queue, calls } = memoryQueue();
    queue.claim = async () => {
      await sleep(300);
      return [job("late")];
    };
    const { lanes: l } = lanes(queue, async () => {
      if (stopped) ranAfterStop++;
      return [];
    });
    l.start();
    await sleep(10);
    await l.stop(100);
    stopped = true;
    await sleep(400);
    expect(ranAfterStop).toBe(0);
    expect(calls.releases.map((r) => r.id)).toEqual(["late"]);
  });

  it("runs the first invocations of runs this process started in free lanes, and gives back what finds none", async () => {
    const { queue, calls } = memoryQueue();
    const blocking = blockingHandler();
    const { lanes: l } = lanes(queue, blocking.handle);
    expect(l.freeSlots()).toBe(0); // not working the queue: nothing is adopted
    l.start();
    await sleep(10);
    expect(l.freeSlots()).toBe(2);
    await l.adopt([job("a"), job("b"), job("c")]);
    expect(blocking.started).toEqual(["a", "b"]);
    expect(l.freeSlots()).toBe(0);
    // The lanes were full: "c" goes back to the queue, due at once, for whoever is free first.
    expect(calls.releases).toEqual([{ id: "c", delayMs: 0 }]);
    blocking.finishOne();
    blocking.finishOne();
    await l.stop(100);
  });

  it("does not claim when a job ends and nothing waited for a lane", async () => {
    const { queue, calls } = memoryQueue();
    const blocking = blockingHandler();
    const { lanes: l } = lanes(queue, blocking.handle);
    l.start();
    await sleep(10);
    const claims = calls.claims;
    await l.adopt([job("a")]);
    blocking.finishOne();
    await sleep(50);
    // The queue said nothing was due and nothing was queued since: a free lane is no news.
    expect(calls.claims).toBe(claims);
    await l.stop(100);
  });

  it("does not adopt into slots a claim on its way may fill", async () => {
    const { queue, calls } = memoryQueue();
    let answerClaim: (jobs: JobRecord[]) => void = () => {};
    queue.claim = () => new Promise((resolve) => (answerClaim = resolve));
    const blocking = blockingHandler();
    const { lanes: l } = lanes(queue, blocking.handle);
    l.start();
    await sleep(10);
    // A claim for two jobs is on its way: nothing is free for adoption until it returns.
    expect(l.freeSlots()).toBe(0);
    await l.adopt([job("adopted")]);
    expect(calls.releases).toEqual([{ id: "adopted", delayMs: 0 }]);
    answerClaim([job("a"), job("b")]);
    await sleep(10);
    expect(blocking.started).toEqual(["a", "b"]);
    blocking.finishOne();
    blocking.finishOne();
    await l.stop(100);
  });

  it("claims a job it gave back at once, not at the next poll, when the queue said nothing was due", async () => {
    const { queue, due } = memoryQueue();
    let answerClaim: (jobs: JobRecord[]) => void = () => {};
    let answerNextDue: (ms: number | null) => void = () => {};
    // The first claim is held until the test answers it; later ones take what is due.
    let holdClaims = true;
    const claim = queue.claim.bind(queue);
    queue.claim = (owner, limit, leaseMs) => (holdClaims ? new Promise((resolve) => (answerClaim = resolve)) : claim(owner, limit, leaseMs));
    queue.nextDueIn = () => new Promise((resolve) => (answerNextDue = resolve));
    queue.release = async (released) => void due.push(released);
    const blocking = blockingHandler();
    const { lanes: l } = lanes(queue, blocking.handle, { pollMs: 5_000 });
    l.start();
    await sleep(10);
    // A claim on its way holds the lanes: the adopted job is given back...
    await l.adopt([job("adopted")]);
    holdClaims = false;
    answerClaim([]);
    await sleep(10);
    // ...and the queue's answer to "when is the next job due" was read before the job was back.
    answerNextDue(null);
    await sleep(50);
    expect(blocking.started).toEqual(["adopted"]);
    blocking.finishOne();
    await l.stop(100);
  });

  it("fires its own timer no earlier than the due time by the wall clock, even when the timer runs early", async () => {
    const { queue } = memoryQueue();
    const firedAt: number[] = [];
    const { lanes: l } = lanes(queue, async (j, how) => (how.unclaimed && firedAt.push(Date.now()), []));
    l.start();
    const realNow = Date.now;
    try {
      const dueAt = realNow() + 40;
      l.fireOwnTimers([job("t", { kind: "wake", runAt: new Date(dueAt) })]);
      // From here the wall clock reads 15 ms behind the timers' clock: the timer runs "early".
      Date.now = () => realNow() - 15;
      await sleep(120);
      expect(firedAt).toHaveLength(1);
      expect(firedAt[0]).toBeGreaterThanOrEqual(dueAt);
    } finally {
      Date.now = realNow;
      await l.stop();
    }
  });
});
