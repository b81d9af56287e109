/**
 * The Scheduler's alarm bookkeeping, with an in-memory stand-in for Durable Object storage:
 * it keeps the earliest wake-up it was told of, and a failed drain re-arms instead of throwing.
 */
import { expect, it, vi } from "vitest";
import type { DurableObjectState } from "../src/cloudflare.ts";
import type { Env } from "../src/env.ts";
import { Scheduler } from "../src/scheduler.ts";

function memoryState(): DurableObjectState & { alarm: number | null } {
  const state = {
    alarm: null as number | null,
    storage: {
      getAlarm: async () => state.alarm,
      setAlarm: async (at: number | Date) => void (state.alarm = typeof at === "number" ? at : at.getTime()),
      deleteAlarm: async () => void (state.alarm = null),
    },
    waitUntil: () => {},
  };
  return state;
}

const wake = (scheduler: Scheduler, at: unknown) =>
  scheduler.fetch(new Request("https://scheduler/wake", { method: "POST", body: JSON.stringify({ at }) }));

it("keeps the earliest wake-up", async () => {
  const state = memoryState();
  const scheduler = new Scheduler(state, {} as Env);
  expect(await (await wake(scheduler, 5_000)).json()).toEqual({ alarm: 5_000 });
  expect(await (await wake(scheduler, 9_000)).json()).toEqual({ alarm: 5_000 });
  expect(await (await wake(scheduler, 2_000)).json()).toEqual({ alarm: 2_000 });
  expect(state.alarm).toBe(2_000);
  expect((await wake(scheduler, "soon")).status).toBe(400);
});

it("re-arms a few seconds later when the drain fails, and does not throw", async () => {
  const state = memoryState();
  // No DATABASE_URL: opening the executor fails, as an unreachable store would.
  const scheduler = new Scheduler(state, { STEPWISE_DEV: "1" } as Env);
  const error = vi.spyOn(console, "error").mockImplementation(() => {});
  const before = Date.now();
  await scheduler.alarm();
  expect(state.alarm).toBeGreaterThanOrEqual(before + 4_000);
  expect(state.alarm).toBeLessThanOrEqual(Date.now() + 5_000);
  expect(error).toHaveBeenCalledWith(expect.stringContaining("DATABASE_URL"));
  error.mockRestore();
});
