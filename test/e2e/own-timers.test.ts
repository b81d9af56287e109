/**
 * Timers an executor committed (a sleep's wake-up, a wait's timeout) it fires itself at their
 * due time, taking the job in the statement that applies it: no claim. Each test watches the
 * claims the queue hands out, so a timer that went through the claim loop instead shows. On a
 * loaded machine a timer may fire late and the claim loop take it (by design: it is the net),
 * so each test sends three and needs at least one fired without a claim (with none, all three are claimed).
 * The three come due together, so one stall of the event loop past the claim loop's hold (50 ms,
 * as under a CI run's parallel suites) sends all three to the net: those tests get two more
 * tries, and a build whose timers never fire themselves fails all three.
 * With two executors on one store, the other one's claim loop comes due at the same moment as
 * a timer: one of the two applies it, never both. (Three things keep it so: the timer's commit
 * takes the job only while nobody holds it, that commit applies only to the run's version it
 * read, and a wake-up of a step no longer sleeping does nothing. The test fails on PostgreSQL
 * with all three taken out. Run here, the second executor woke 17 to 36 of the 40 runs.)
 */
import type { JobRecord } from "@stepwise/engine";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { memoryLogger, startStack, startTwoExecutors, STORE_KINDS, type Stack } from "../support/stack.ts";

const client = new Stepwise({
  id: "own-timers",
  dev: true,
  schemas: { "timers/nap": z.object({}), "timers/wait": z.object({}), "timers/never": z.object({}), "timers/clock": z.object({}), "timers/shared": z.object({ n: z.number() }) },
});
const nap = client.createFunction({ id: "nap", triggers: [{ event: "timers/nap" }] }, async ({ step }) => {
  await step.run("before", () => 1);
  await step.sleep("nap", 300);
  return step.run("after", () => "awake");
});
const clock = client.createFunction({ id: "clock", triggers: [{ event: "timers/clock" }] }, async ({ step }) => {
  await step.sleep("nap", 300);
  return step.run("after", () => Date.now());
});
/** How many times each run's step after its sleep ran in the app. */
const afterRan = new Map<string, number>();
const sharedNap = client.createFunction({ id: "shared-nap", triggers: [{ event: "timers/shared" }] }, async ({ step, runId }) => {
  await step.sleep("nap", 300);
  return step.run("after", () => afterRan.set(runId, (afterRan.get(runId) ?? 0) + 1).get(runId));
});
const waiter = client.createFunction({ id: "waiter", triggers: [{ event: "timers/wait" }] }, async ({ step }) => {
  const reply = await step.waitForEvent("reply", { event: "timers/never", timeout: 300 });
  return { reply };
});

describe.each(STORE_KINDS)("an executor's own timers on %s", (kind) => {
  let stack: Stack;
  const claimed: JobRecord[] = [];
  beforeAll(async () => {
    stack = await startStack({ store: kind, client, functions: [nap, waiter, clock] });
    const queue = stack.store.queue;
    const claim = queue.claim.bind(queue);
    queue.claim = async (owner, limit, leaseMs) => {
      const jobs = await claim(owner, limit, leaseMs);
      claimed.push(...jobs);
      return jobs;
    };
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
  });
  beforeEach(() => {
    claimed.length = 0;
  });

  const three = (name: string) => stack.send([1, 2, 3].map(() => ({ name, data: {} })));

  it("wakes sleeping runs without a claim, each once", { retry: 2 }, async () => {
    const runs = await Promise.all((await three("timers/nap")).map((id) => stack.waitForRun(id)));
    for (const run of runs) {
      expect(run).toMatchObject({ status: "completed", output: "awake" });
      expect(stack.log.lines.filter((line) => line.includes(run.id) && line.includes("woke up"))).toHaveLength(1);
    }
    const ids = new Set(runs.map((run) => run.id));
    expect(claimed.filter((job) => ids.has(job.runId) && job.kind === "wake").length).toBeLessThan(3);
  });

  it("starts the step after a sleep no earlier than the sleep's due time", async () => {
    const ids = await stack.send([1, 2, 3].map(() => ({ name: "timers/clock", data: {} })));
    for (const id of ids) {
      const run = await stack.waitForRun(id);
      expect(run.status).toBe("completed");
      const sleep = (await stack.store.listSteps(run.id)).find((s) => s.id === "nap")!;
      expect(sleep.endedAt!.getTime()).toBeGreaterThanOrEqual(sleep.wakeAt!.getTime());
      expect(run.output as number).toBeGreaterThanOrEqual(sleep.wakeAt!.getTime());
    }
  });

  it("times waits out without a claim", { retry: 2 }, async () => {
    const runs = await Promise.all((await three("timers/wait")).map((id) => stack.waitForRun(id)));
    for (const run of runs) expect(run).toMatchObject({ status: "completed", output: { reply: null } });
    const ids = new Set(runs.map((run) => run.id));
    expect(claimed.filter((job) => ids.has(job.runId) && job.kind === "wait-timeout").length).toBeLessThan(3);
  });

  it("leaves a timer whose run was cancelled meanwhile: the run stays cancelled", async () => {
    const [id] = await stack.send({ name: "timers/nap", data: {} });
    const deadline = Date.now() + 10_000;
    let runs = await stack.runsOf(id!);
    while (runs[0]?.status !== "sleeping" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      runs = await stack.runsOf(id!);
    }
    const response = await fetch(`${stack.executor.url}/api/runs/${runs[0]!.id}/cancel`, { method: "POST" });
    expect(response.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const run = await stack.getRun(runs[0]!.id);
    expect(run.status).toBe("cancelled");
    expect(run.steps.find((s) => s.id === "after")).toBeUndefined();
  });
});

describe.each(STORE_KINDS)("timers with two executors on %s", (kind) => {
  it("applies each timer once: by the executor that set it or by the other's claim, never both", { timeout: 60_000 }, async () => {
    const secondLog = memoryLogger();
    // The second one looks at the queue every few milliseconds, so it is there at each due time.
    const stack = await startTwoExecutors({ store: kind, client, functions: [sharedNap], second: { log: secondLog, pollMs: 2 } });
    try {
      // Half the runs sleep on each executor: each fires its own timers while the other's claim
      // loop comes due for the same jobs at the same moment.
      const events = Array.from({ length: 40 }, (_, n) => ({ name: "timers/shared", data: { n } }));
      const sent = await Promise.all([stack.send(events.slice(0, 20)), stack.second.sendEvents(events.slice(20)).then((result) => result.ids)]);
      const runs = await Promise.all(sent.flat().map((id) => stack.waitForRun(id, { timeoutMs: 30_000 })));
      for (const run of runs) {
        expect(run).toMatchObject({ status: "completed", output: 1 });
        expect(afterRan.get(run.id)).toBe(1);
        const wokeUp = [...stack.log.lines, ...secondLog.lines].filter((line) => line.includes(run.id) && line.includes("woke up"));
        expect(wokeUp).toHaveLength(1);
      }
    } finally {
      await stack.close();
    }
  });
});
