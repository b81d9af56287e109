/**
 * Cron triggers over real HTTP on every store: a run per tick on time, one run per tick however
 * many executors share the store, and a bad pattern refused where it is written and at sync.
 */
import { CRON_EVENT, DEV_SIGNING_KEY, nextCronTick } from "@stepwise/protocol";
import { cronEventId, Executor, silentLogger, type RunView } from "@stepwise/engine";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const EVERY_SECOND = "* * * * * *";
/** Ticks the app saw, by function and tick time (ISO): the body of the tick's step ran. */
const ticks = new Map<string, number>();

const client = new Stepwise({ id: "cron-e2e", dev: true });
const heartbeat = client.createFunction({ id: "heartbeat", triggers: [{ cron: EVERY_SECOND }], retries: 0 }, async ({ event, step }) => {
  const at = await step.run("beat", () => {
    const key = `heartbeat ${event.data.scheduledAt}`;
    ticks.set(key, (ticks.get(key) ?? 0) + 1);
    return event.data.scheduledAt;
  });
  return { name: event.name, at };
});

describe.each(STORE_KINDS)("cron triggers on %s", (store) => {
  let stack: Stack;
  let second: Executor | undefined;

  beforeAll(async () => {
    stack = await startStack({ store, client, functions: [heartbeat] });
  });
  afterAll(async () => {
    await second?.stop();
    await stack?.close();
  });

  /** The run of each tick in [from, to), through the run API, keyed by tick time. */
  async function runsByTick(from: Date, to: Date): Promise<Map<string, RunView[]>> {
    const found = new Map<string, RunView[]>();
    for (let tick = nextCronTick(EVERY_SECOND, new Date(from.getTime() - 1))!; tick < to; tick = nextCronTick(EVERY_SECOND, tick)!) {
      found.set(tick.toISOString(), await stack.runsOf(cronEventId("cron-e2e-heartbeat", EVERY_SECOND, tick)));
    }
    return found;
  }

  it("starts one run per tick, on time, with a stepwise/cron event saying which tick", async () => {
    const from = new Date(Date.now() + 1_000);
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    const to = new Date(Date.now() - 1_000);
    const byTick = await runsByTick(from, to);
    expect(byTick.size).toBeGreaterThanOrEqual(2);
    for (const [tick, runs] of byTick) {
      expect(runs, `tick ${tick}`).toHaveLength(1);
      expect(runs[0]).toMatchObject({ status: "completed", output: { name: CRON_EVENT, at: tick } });
      // The tick's run started right after its time: milliseconds here; the bound leaves room for a loaded CI machine.
      expect(new Date(runs[0]!.startedAt).getTime() - new Date(tick).getTime()).toBeLessThan(2_000);
      expect(ticks.get(`heartbeat ${tick}`)).toBe(1);
    }
  });

  it("two executors sharing the store start one run per tick between them", async () => {
    second = new Executor({ store: stack.store, signingKey: DEV_SIGNING_KEY, log: silentLogger, pollMs: 50, registryRefreshMs: 0 });
    await second.start();
    const from = new Date(Date.now() + 1_000);
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const to = new Date(Date.now() - 1_000);
    const byTick = await runsByTick(from, to);
    expect(byTick.size).toBeGreaterThanOrEqual(3);
    for (const [tick, runs] of byTick) {
      expect(runs, `tick ${tick}`).toHaveLength(1);
      expect(ticks.get(`heartbeat ${tick}`), `tick ${tick}`).toBe(1);
    }
    // Which executor fires a tick is a race (both claim loops wake at its due time); in runs of this test each fired some.
    await second.stop();
    second = undefined;
  });

  it("refuses an app whose cron pattern is bad at sync, naming the function and the option, and changes nothing", async () => {
    const description = {
      appId: "cron-bad",
      url: "http://127.0.0.1:9/api/durable",
      sdk: "raw",
      functions: [{ id: "broken", triggers: [{ cron: "61 * * * *" }], retries: 0 }],
    };
    await expect(stack.executor.executor.syncApp(description)).rejects.toThrow(/function "broken" \(functions\.0\): triggers\.0\.cron: "61 \* \* \* \*" is not a cron pattern/);
    const functions = await stack.executor.executor.listFunctions();
    expect(functions.map((fn) => fn.id)).not.toContain("cron-bad-broken");
  });
});

describe("cron triggers in the SDK", () => {
  it("refuses a bad pattern at createFunction, naming the function and the trigger", () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ cron: "61 * * * *" }, /createFunction\("f"\): triggers\.0\.cron: "61 \* \* \* \*" is not a cron pattern \(.*minute.*\)/],
      [{ cron: "TZ=Mars/Olympus 0 9 * * *" }, /triggers\.0\.cron: "TZ=Mars\/Olympus 0 9 \* \* \*" is not a cron pattern/],
      [{ cron: "0 0 30 2 *" }, /triggers\.0\.cron: "0 0 30 2 \*" never comes round/],
      [{ cron: "0 9 * * *", event: "a/b" }, /triggers\.0: a trigger has either "event" \(with "if"\) or "cron", not both/],
    ];
    for (const [trigger, message] of cases) {
      expect(() => client.createFunction({ id: "f", triggers: [trigger as { cron: string }] }, () => {})).toThrow(message);
    }
  });
});
