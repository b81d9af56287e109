/** Runs, steps and environments for the transition tests: plain data, no store. */
import type { FunctionConfig } from "@stepwise/protocol";
import { DEFAULT_BACKOFF } from "../../src/backoff.ts";
import { DEFAULT_LIMITS } from "../../src/limits.ts";
import { RunDraft, type MachineEnv } from "../../src/machine/draft.ts";
import type { EventRecord, FunctionRecord, RunRecord, RunState, StepRecord } from "../../src/records.ts";

export const NOW = Date.parse("2026-12-01T12:00:00.000Z");

export function fn(config: Partial<FunctionConfig> = {}): FunctionRecord {
  return { id: "app-fn", appId: "app", localId: "fn", config: { id: "fn", triggers: [{ event: "a/start" }], retries: 2, ...config } };
}

export function env(overrides: Partial<MachineEnv> = {}, functions: FunctionRecord[] = []): MachineEnv {
  const own = overrides.fn === undefined && !("fn" in overrides) ? fn() : overrides.fn;
  return {
    now: NOW,
    fn: own,
    limits: DEFAULT_LIMITS,
    backoff: DEFAULT_BACKOFF,
    findFunction: (id) => functions.find((f) => f.id === id),
    isolatedApps: new Set(),
    ...overrides,
  };
}

export const trigger: EventRecord = { id: "evt-1", name: "a/start", data: { orderId: "o-1" }, ts: NOW };

export function run(fields: Partial<RunRecord> = {}): RunRecord {
  return { id: "run-1", functionId: "app-fn", eventId: trigger.id, status: "running", attempt: 0, startedAt: new Date(NOW - 1_000), version: 3, stateBytes: 0, ...fields };
}

export function step(id: string, fields: Partial<StepRecord> = {}): StepRecord {
  return { runId: "run-1", id, name: id, kind: "run", position: 0, status: "completed", output: null, attempts: 1, startedAt: new Date(NOW - 500), ...fields };
}

export function draft(steps: StepRecord[] = [], runFields: Partial<RunRecord> = {}, event: EventRecord = trigger): RunDraft {
  const state: RunState = { run: run(runFields), steps, event };
  return new RunDraft(state);
}

/** The steps a change writes, by ID: what the transition decided for each. */
export function written(d: RunDraft): Record<string, Pick<StepRecord, "status"> & Partial<StepRecord>> {
  return Object.fromEntries(d.change.steps.map((s) => [s.id, s]));
}
