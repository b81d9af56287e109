/** A new run of a function for an event: queued, with its `cancelOn` matchers open. */
import { newId, toMs } from "@stepwise/protocol";
import { evaluateValue } from "../expressions.ts";
import { runLabel } from "../log.ts";
import type { EventRecord, FunctionRecord, RunRecord } from "../records.ts";
import { RunDraft, type MachineEnv } from "./draft.ts";
import { newMatcher } from "./waits.ts";

export function newRun(fn: FunctionRecord, event: EventRecord, env: Pick<MachineEnv, "now">, parent?: { runId: string; stepId: string }): RunDraft {
  const run: RunRecord = {
    id: newId(env.now),
    functionId: fn.id,
    eventId: event.id,
    status: "queued",
    attempt: 0,
    startedAt: new Date(env.now),
    version: 0,
    stateBytes: 0,
  };
  if (parent) {
    run.parentRunId = parent.runId;
    run.parentStepId = parent.stepId;
  }
  const draft = new RunDraft({ run, steps: [], event });
  (fn.config.cancelOn ?? []).forEach((rule, index) => {
    draft.openMatcher(newMatcher(draft, { stepId: `cancel:${index}`, kind: "cancel", eventName: rule.event, match: rule.match, if: rule.if }));
  });
  draft.enqueue({ kind: "invoke" });
  const finishMs = fn.config.timeouts?.finish === undefined ? undefined : toMs(fn.config.timeouts.finish);
  // Due on the store's clock, counted from the commit: an executor whose clock is off does not move it.
  if (finishMs !== undefined) draft.enqueue({ kind: "finish-timeout", delayMs: finishMs });
  draft.info(`${runLabel(run.id, fn.id)} queued for event ${event.name} (${event.id})`);
  return draft;
}

/** How long an idempotency key holds back further runs of its function: 24 hours. */
export const IDEMPOTENCY_WINDOW_MS = 24 * 3_600_000;

/**
 * The idempotency key of `event` for a function whose `idempotency` expression is `source`, as
 * text (strings as they are, other values as JSON); undefined when the expression has no value
 * for this event (a missing field): such an event starts its run without a key.
 */
export function idempotencyKey(source: string, event: EventRecord): string | undefined {
  const value = evaluateValue(source, { event });
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
}
