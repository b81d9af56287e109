/**
 * Events in: store them, then, for each event not seen before, in the same transaction:
 * cancel the runs whose `cancelOn` it matches, resolve the waits it satisfies, and start a
 * run of every function it triggers. So an acknowledged event has had all its effects, or,
 * if anything fails, none of them.
 */
import { newId } from "@stepwise/protocol";
import type { Unit } from "./context.ts";
import { evaluateCondition, matches } from "./expressions.ts";
import { finishRun } from "./finish.ts";
import { runLabel } from "./log.ts";
import { continueRun } from "./progress.ts";
import { TERMINAL_RUN_STATUSES, type EventRecord, type FunctionRecord, type MatcherRecord, type RunRecord } from "./records.ts";

/** Stores `events` and applies their effects inside `unit`'s transaction; returns the new ones. */
export async function ingestInTransaction(unit: Unit, events: EventRecord[]): Promise<EventRecord[]> {
  const inserted = await unit.tx.insertEvents(events);
  for (const event of inserted) {
    await applyMatchers(unit, event);
    for (const fn of unit.ctx.registry.triggeredBy(event.name)) {
      const wanted = fn.config.triggers.some(
        (trigger) => trigger.event === event.name && (!trigger.if || evaluateCondition(trigger.if, { event })),
      );
      if (wanted) await startRun(unit, fn, event);
    }
  }
  return inserted;
}

/** Creates a run of `fn` for `event` and queues its first invocation. */
export async function startRun(
  unit: Unit,
  fn: FunctionRecord,
  event: EventRecord,
  parent?: { runId: string; stepId: string },
): Promise<RunRecord> {
  const run: RunRecord = {
    id: newId(),
    functionId: fn.id,
    eventId: event.id,
    status: "queued",
    attempt: 0,
    parentRunId: parent?.runId,
    parentStepId: parent?.stepId,
    startedAt: new Date(),
    version: 0,
  };
  await unit.tx.insertRun(run);
  const cancelOn = fn.config.cancelOn ?? [];
  if (cancelOn.length > 0) {
    await unit.tx.insertMatchers(
      cancelOn.map((rule, index) => ({
        runId: run.id,
        stepId: `cancel:${index}`,
        kind: "cancel" as const,
        eventName: rule.event,
        matchPath: rule.match,
        matchValue: rule.match ? valueOrNull(event, rule.match) : undefined,
        ifExpr: rule.if,
      })),
    );
  }
  await unit.enqueue([{ kind: "invoke", runId: run.id }]);
  unit.info(`${runLabel(run.id, fn.id)} queued for event ${event.name} (${event.id})`);
  return run;
}

function valueOrNull(event: EventRecord, path: string): unknown {
  let current: unknown = event;
  for (const key of path.split(".")) {
    if (current === null || typeof current !== "object") return null;
    current = (current as Record<string, unknown>)[key];
  }
  return current ?? null;
}

/** Cancels and resumes the runs whose open matchers `event` satisfies. */
async function applyMatchers(unit: Unit, event: EventRecord): Promise<void> {
  const candidates = await unit.tx.findMatchers(event.name);
  // Cancellations first: a run cancelled by this event does not also resume on it.
  candidates.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === "cancel" ? -1 : 1));
  for (const matcher of candidates) {
    if (!(await matcherAccepts(unit, matcher, event))) continue;
    const run = await unit.tx.lockRun(matcher.runId);
    if (!run || TERMINAL_RUN_STATUSES.includes(run.status)) continue;
    if (matcher.kind === "cancel") {
      await finishRun(unit, run, { status: "cancelled", reason: `event ${event.name} (${event.id}) matched cancelOn` });
    } else {
      await resolveWait(unit, run, matcher, event);
    }
  }
}

/** Checks the frozen match value first; loads the run's trigger only for an `if` expression. */
async function matcherAccepts(unit: Unit, matcher: MatcherRecord, event: EventRecord): Promise<boolean> {
  if (!matches({ matchPath: matcher.matchPath, matchValue: matcher.matchValue }, undefined, event)) return false;
  if (!matcher.ifExpr) return true;
  const run = await unit.tx.getRun(matcher.runId);
  const trigger = run ? await unit.tx.getEvent(run.eventId) : null;
  return matches({ ifExpr: matcher.ifExpr }, trigger, event);
}

async function resolveWait(unit: Unit, run: RunRecord, matcher: MatcherRecord, event: EventRecord): Promise<void> {
  const step = (await unit.steps(run.id)).find((s) => s.id === matcher.stepId);
  await unit.tx.deleteMatcher(run.id, matcher.stepId);
  if (!step || step.status !== "waiting") return;
  await unit.saveStep({ ...step, status: "completed", output: event, attempts: 1, endedAt: new Date() });
  unit.info(`${runLabel(run.id, run.functionId)} step "${step.name}" received ${event.name} (${event.id})`);
  await continueRun(unit, run);
}
