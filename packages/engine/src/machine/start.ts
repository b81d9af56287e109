/** A new run of a function for an event: queued, with its `cancelOn` matchers open. */
import { newId, toMs } from "@stepwise/protocol";
import { runLabel } from "../log.ts";
import type { ConcurrencySlot, EventRecord, FunctionRecord, RunRecord } from "../records.ts";
import { RunDraft, type MachineEnv } from "./draft.ts";
import { newMatcher } from "./waits.ts";

export function newRun(
  fn: FunctionRecord,
  event: EventRecord,
  env: Pick<MachineEnv, "now">,
  parent?: { runId: string; stepId: string },
  concurrency?: ConcurrencySlot[],
  /** The version its app serves now: the run is invoked at that deployment while it answers. */
  appVersion?: string,
): RunDraft {
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
  if (concurrency) run.concurrency = concurrency;
  if (event.traceparent) run.traceparent = event.traceparent;
  if (appVersion !== undefined) run.appVersion = appVersion;
  if (parent) {
    run.parentRunId = parent.runId;
    run.parentStepId = parent.stepId;
  }
  const draft = new RunDraft({ run, steps: [], event });
  (fn.config.cancelOn ?? []).forEach((rule, index) => {
    // A rule with a timeout stops listening that long after the run started (store's clock judges matchers).
    const expiresAt = rule.timeout === undefined ? undefined : new Date(env.now + toMs(rule.timeout));
    draft.openMatcher(newMatcher(draft, { stepId: `cancel:${index}`, kind: "cancel", eventName: rule.event, match: rule.match, if: rule.if, expiresAt }));
  });
  draft.enqueue({ kind: "invoke" });
  const finishMs = fn.config.timeouts?.finish === undefined ? undefined : toMs(fn.config.timeouts.finish);
  // Due on the store's clock, counted from the commit: an executor whose clock is off does not move it.
  if (finishMs !== undefined) draft.enqueue({ kind: "finish-timeout", delayMs: finishMs });
  draft.info(`${runLabel(run.id, fn.id)} queued for event ${event.name} (${event.id})`);
  draft.signals.push({ type: "run-started", functionId: fn.id, runId: run.id });
  return draft;
}

