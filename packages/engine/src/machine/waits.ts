/**
 * Runs waiting for events: a `step.waitForEvent` (resolved by the first matching event) and a
 * function's `cancelOn` rules (the run is cancelled). A matcher freezes the trigger's value at
 * its `match` path when it opens; a trigger without that field gets a matcher no event meets,
 * rather than one that any event with that field set to `null` would meet.
 */
import { matches, valueAtPath } from "../expressions.ts";
import { runLabel } from "../log.ts";
import { eventForApp, isTerminal, type EventRecord, type MatcherRecord } from "../records.ts";
import type { MachineEnv, RunDraft } from "./draft.ts";
import { finish } from "./ending.ts";

/**
 * A matcher for the run of `draft`, with `match` frozen from its trigger, or with `value`: an
 * event's field that must equal a given value (a signal's name).
 */
export function newMatcher(
  draft: RunDraft,
  fields: { stepId: string; kind: MatcherRecord["kind"]; eventName: string; match?: string; value?: { path: string; is: unknown }; if?: string; expiresAt?: Date },
): MatcherRecord {
  const matcher: MatcherRecord = { runId: draft.run.id, stepId: fields.stepId, kind: fields.kind, eventName: fields.eventName };
  if (fields.value !== undefined) {
    matcher.matchPath = fields.value.path;
    matcher.matchValue = fields.value.is;
  } else if (fields.match !== undefined) {
    matcher.matchPath = fields.match;
    const value = valueAtPath(draft.event, fields.match);
    if (value !== undefined) matcher.matchValue = value;
  }
  if (fields.if !== undefined) matcher.ifExpr = fields.if;
  if (fields.expiresAt) matcher.expiresAt = fields.expiresAt;
  return matcher;
}

/** Whether `event` meets `matcher`, opened by a run that `trigger` started. */
export function matcherAccepts(matcher: MatcherRecord, trigger: EventRecord, event: EventRecord): boolean {
  if (matcher.eventName !== event.name) return false;
  // The trigger lacked the match field: nothing can be equal to a value that is not there.
  if (matcher.matchPath !== undefined && matcher.matchValue === undefined) return false;
  return matches(matcher, trigger, event);
}

/** An event met a wait: the waiting step resolves to it. False when the step was no longer waiting. */
export function resolveWait(draft: RunDraft, env: MachineEnv, stepId: string, event: EventRecord): boolean {
  draft.closeMatcher(stepId);
  if (isTerminal(draft.run.status)) return false;
  const step = draft.step(stepId);
  if (!step || step.status !== "waiting") return false;
  draft.saveStep({ ...step, status: "completed", output: eventForApp(event), attempts: 1, endedAt: new Date(env.now) });
  draft.dropJobs({ kind: "wait-timeout", stepId });
  draft.info(`${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}" received ${event.name} (${event.id})`);
  return true;
}

/** An event met one of the run's `cancelOn` rules. */
export function cancelOnEvent(draft: RunDraft, env: MachineEnv, event: EventRecord): void {
  finish(draft, env, { status: "cancelled", reason: `event ${event.name} (${event.id}) matched cancelOn` });
}
