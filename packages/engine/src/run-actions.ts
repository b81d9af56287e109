/**
 * What an operator does to runs through the API, beyond reading them: start one again (replay,
 * rerun from a step: `unit/replays.ts` says what a new run keeps), pause and resume a run or a
 * function (`machine/pauses.ts`), and cancel or replay every run a list's filters select. A bulk action does one page per call and answers with the cursor
 * of the next, so each request stays short (on a Worker too), a client can show progress, and
 * runs started by the action itself (replays are newer than the page) are never picked up again.
 */
import { machineEnv, type EngineContext } from "./context.ts";
import { InputError } from "./errors.ts";
import type { RunDraft } from "./machine/draft.ts";
import { finish } from "./machine/ending.ts";
import { pause, resume } from "./machine/pauses.ts";
import { z } from "zod";
import { isTerminal, type FunctionRecord, type RunRecord, type RunState } from "./records.ts";
import { findRuns, matchesQuery } from "./run-finder.ts";
import { encodeCursor, parseBulkQuery, type BulkCancelResult, type BulkReplayResult } from "./run-list.ts";
import { parseRerun, startReplay, throttle, type Rerun } from "./unit/replays.ts";
import type { UnitOfWork } from "./unit/unit.ts";
import type { RunView } from "./views.ts";

/** What the actions need of the executor. */
export interface Operator {
  ctx: EngineContext;
  /** Runs `fn` in one transaction; runs it starts go to the executor's free lanes. */
  inUnit<T>(fn: (unit: UnitOfWork) => Promise<T>): Promise<T>;
  view(runId: string): Promise<RunView | null>;
}

/** Runs one transaction of a bulk action changes: none holds many run locks for long. */
const RUNS_PER_UNIT = 25;

export async function replayRun(op: Operator, runId: string): Promise<RunView | null> {
  // Outputs are not needed: a replay keeps no step.
  const original = await op.ctx.store.loadRunState(runId, { maxOutputBytes: 0 });
  return original && startAgain(op, original);
}

export async function rerunRun(op: Operator, runId: string, body: unknown): Promise<RunView | null> {
  const rerun = parseRerun(body, op.ctx.limits);
  const original = await op.ctx.store.loadRunState(runId);
  return original && startAgain(op, original, rerun);
}

async function startAgain(op: Operator, original: RunState, rerun?: Rerun): Promise<RunView | null> {
  const fn = await functionToReplay(op.ctx, original.run);
  const id = await op.inUnit(async (unit) => (await startReplay(unit, fn, original, rerun)).run.id);
  return op.view(id);
}

/** The run's function, as registered now, to start it again; an `InputError` when it is gone. */
async function functionToReplay(ctx: EngineContext, run: RunRecord): Promise<FunctionRecord> {
  const fn = await ctx.registry.getFunction(run.functionId);
  if (!fn) throw new InputError(`Run ${run.id} cannot be started again: its function "${run.functionId}" is no longer registered; sync the app that serves it first`, 409);
  return fn;
}

/** One page of the live runs the filters select, cancelled. */
export async function cancelRuns(op: Operator, params: Record<string, string[]>): Promise<BulkCancelResult> {
  const query = parseBulkQuery(params, "cancel");
  const { runs, next, events } = await findRuns(op.ctx.store, query);
  await op.ctx.registry.ensureFresh();
  const result: BulkCancelResult = { matched: runs.length, cancelled: 0, passed: [], next: next && encodeCursor(next) };
  // Locked in ID order, as every transaction locks runs.
  const ids = runs.map((run) => run.id).sort();
  const statuses = new Set(query.statuses);
  for (let at = 0; at < ids.length; at += RUNS_PER_UNIT) {
    // Counted per attempt and kept once it commits: a transaction retried after a deadlock runs again.
    const chunk = await op.inUnit(async (unit) => {
      const done = { cancelled: 0, passed: [] as BulkCancelResult["passed"] };
      for (const runId of ids.slice(at, at + RUNS_PER_UNIT)) {
        const draft = await unit.load(runId);
        // Read again under the run's lock: it may have moved since the page was listed.
        if (!draft || !statuses.has(draft.run.status)) {
          done.passed.push({ runId, reason: !draft ? "it is gone (pruned)" : isTerminal(draft.run.status) ? `it ended (${draft.run.status}) before the cancel reached it` : `it is ${draft.run.status} now, which the filter does not select` });
          continue;
        }
        // `q` too: what it reads of the run (its status, whether it is paused) may have changed.
        if (query.q !== undefined && !matchesQuery(query.q, draft.run, events?.get(draft.run.eventId))) {
          done.passed.push({ runId, reason: "it no longer matches q" });
          continue;
        }
        finish(draft, machineEnv(op.ctx, draft.run.functionId), { status: "cancelled", reason: "cancelled in bulk through the API" });
        done.cancelled++;
      }
      return done;
    });
    result.cancelled += chunk.cancelled;
    result.passed.push(...chunk.passed);
  }
  return result;
}

/** One page of the runs the filters select, each started again from its event. */
export async function replayRuns(op: Operator, params: Record<string, string[]>): Promise<BulkReplayResult> {
  const { runs, next } = await findRuns(op.ctx.store, parseBulkQuery(params, "replay"));
  const result: BulkReplayResult = { matched: runs.length, replayed: [], passed: [], next: next && encodeCursor(next) };
  const originals: Array<{ state: RunState; fn: FunctionRecord }> = [];
  for (const run of runs) {
    const state = await op.ctx.store.loadRunState(run.id, { maxOutputBytes: 0 });
    const fn = state && (await op.ctx.registry.getFunction(run.functionId));
    if (state && fn) originals.push({ state, fn });
    else result.passed.push({ runId: run.id, reason: state ? `its function "${run.functionId}" is no longer registered` : "it is gone (pruned)" });
  }
  for (let at = 0; at < originals.length; at += RUNS_PER_UNIT) {
    const chunk = originals.slice(at, at + RUNS_PER_UNIT);
    const started = await op.inUnit(async (unit) => {
      const ids: string[] = [];
      for (const { state, fn } of chunk) ids.push((await startReplay(unit, fn, state)).run.id);
      return ids;
    });
    started.forEach((runId, i) => result.replayed.push({ runId, replayOf: chunk[i]!.state.run.id }));
  }
  return result;
}

/** Pauses a live run (already paused: as it is); null when there is no such run, a 409 when it ended. */
export async function pauseRun(op: Operator, runId: string): Promise<RunView | null> {
  return changeLiveRun(op, runId, "paused", (draft) => pause(draft, { at: new Date(op.ctx.clock.now()), by: "operator" }));
}

/** Resumes a paused run (not paused: as it is); null when there is no such run, a 409 when it ended. */
export async function resumeRun(op: Operator, runId: string): Promise<RunView | null> {
  return changeLiveRun(op, runId, "resumed", (draft) => resume(draft, machineEnv(op.ctx, draft.run.functionId)));
}

async function changeLiveRun(op: Operator, runId: string, done: string, change: (draft: RunDraft) => void): Promise<RunView | null> {
  await op.ctx.registry.ensureFresh();
  const found = await op.inUnit(async (unit) => {
    const draft = await unit.load(runId);
    if (!draft) return false;
    if (isTerminal(draft.run.status)) throw new InputError(`Run ${runId} has ended (${draft.run.status}): it cannot be ${done}`, 409);
    change(draft);
    return true;
  });
  return found ? op.view(runId) : null;
}

/** What a function's resume does with the runs its pause held: start them, or skip them. */
export type HeldRuns = "run" | "skip";

const ResumeFunctionSchema = z.object({ held: z.enum(["run", "skip"]).optional() }).strict();

export interface FunctionResumed {
  /** Held runs started. */
  resumed: number;
  /** Held runs ended as skipped. */
  skipped: number;
}

/**
 * Resumes a paused function: it starts runs again, and the runs its pause held are started
 * (`{ held: "run" }`, the default) or skipped (`{ held: "skip" }`), a few per transaction until
 * none is left. Null when no function has that ID.
 */
export async function resumeFunction(op: Operator, functionId: string, body: unknown): Promise<FunctionResumed | null> {
  const parsed = ResumeFunctionSchema.safeParse(body ?? {});
  if (!parsed.success) throw new InputError(`Invalid resume: send {} or { "held": "run" | "skip" } (what to do with the runs the pause held)`);
  const held = parsed.data.held ?? "run";
  if (!(await op.ctx.store.setFunctionPaused(functionId, { resumed: held }))) return null;
  await op.ctx.registry.refresh();
  return releaseHeldRuns(op, functionId, held);
}

/** Pauses a function: its runs from now on start held, on every executor (the store holds them). Null when no function has that ID. */
export async function pauseFunction(op: Operator, functionId: string): Promise<FunctionRecord | null> {
  const fn = await op.ctx.store.setFunctionPaused(functionId, { paused: new Date(op.ctx.clock.now()) });
  if (fn) await op.ctx.registry.refresh();
  return fn;
}

/** Starts or skips the runs a function's pause held, until none is left. */
export async function releaseHeldRuns(op: Operator, functionId: string, held: HeldRuns): Promise<FunctionResumed> {
  const result: FunctionResumed = { resumed: 0, skipped: 0 };
  for (;;) {
    const ids = (await op.ctx.store.listHeldRuns(functionId, RUNS_PER_UNIT)).sort();
    if (ids.length === 0) return result;
    // Counted per attempt and kept once it commits (a retried transaction runs again).
    const round = await op.inUnit(async (unit) => {
      const done: FunctionResumed = { resumed: 0, skipped: 0 };
      for (const runId of ids) {
        const draft = await unit.load(runId);
        if (!draft || isTerminal(draft.run.status) || draft.run.paused?.by !== "function") continue;
        const env = machineEnv(op.ctx, draft.run.functionId);
        if (held === "run") {
          resume(draft, env);
          // Its start is now: it takes one of the function's throttle, as at an event.
          if (env.fn) await throttle(unit, env.fn, draft);
          done.resumed++;
        } else {
          finish(draft, env, { status: "skipped", reason: "its function was paused when it started, and resumed with its held runs skipped" });
          done.skipped++;
        }
      }
      return done;
    });
    result.resumed += round.resumed;
    result.skipped += round.skipped;
    // Each round ends the hold of the runs it read; one that did nothing would read them again.
    if (round.resumed + round.skipped === 0) return result;
  }
}
