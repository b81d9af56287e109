/**
 * What a unit does with the waits its runs opened, before it commits:
 *  - a wait for an event looks back (under a lock on the event name) for events that arrived
 *    since its run became due, or since its `lookback`, so a reply that beat the wait into the
 *    store is not missed;
 *  - a wait for a signal claims the signal's name (under a lock on that name): one run waits for
 *    a signal at a time, and `onConflict` says what happens when another already does;
 *  - a wait for a callback reads the POST that came before it, if one did (under the lock on the
 *    callback event's name, which each POST shares: one sees the other).
 * And how a signal finds its run (`deliverSignal`). Signal waits never look back: a signal is
 * stored only in the transaction that resumes its run, so any stored one was taken already.
 */
import { CALLBACK_EVENT, SIGNAL_EVENT } from "@stepwise/protocol";
import { callbackEventId } from "../callback-urls.ts";
import { serializedError } from "../errors.ts";
import { runLabel } from "../log.ts";
import type { EventRecord, MatcherRecord, StepRecord } from "../records.ts";
import type { MachineEnv, RunDraft } from "../machine/draft.ts";
import { stepAttemptFailed } from "../machine/steps.ts";
import { matcherAccepts, resolveWait } from "../machine/waits.ts";
import type { StoreTx } from "../store.ts";

/** A wait opened in this unit, with its run. */
export interface NewWait {
  draft: RunDraft;
  matcher: MatcherRecord;
}

/** What the waits need of their unit. */
export interface WaitsUnit {
  readonly tx: StoreTx;
  env(draft: RunDraft): MachineEnv;
  /** The run, locked for the rest of the transaction (see `UnitOfWork.load`). */
  load(runId: string): Promise<RunDraft | null>;
  /** The run's draft if this unit holds it already. */
  loaded(runId: string): RunDraft | undefined;
  /** The app a run belongs to (undefined when its function is no longer known). */
  appOfRun(runId: string): Promise<string | undefined>;
  now(): number;
}

/**
 * Claims the new signal waits and looks back for the new event waits, under one call that
 * takes every lock they need, in order (two units never wait for each other's names).
 * `readyAt`: when the invocation that opened them became due (store clock).
 */
export async function settleNewWaits(unit: WaitsUnit, waits: NewWait[], readyAt: Date | undefined): Promise<void> {
  const signals = waits.filter((wait) => wait.matcher.eventName === SIGNAL_EVENT);
  const callbacks = waits.filter((wait) => wait.matcher.eventName === CALLBACK_EVENT);
  const lookBacks = waits.flatMap((wait) => {
    if (wait.matcher.eventName === SIGNAL_EVENT || wait.matcher.eventName === CALLBACK_EVENT) return [];
    const since = sinceOf(wait, readyAt, unit.now());
    return since ? [{ ...wait, since }] : [];
  });
  const locks = [
    ...new Set([...signals.map((wait) => signalLock(signalOf(wait.matcher))), ...callbacks.map(() => CALLBACK_EVENT), ...lookBacks.map((wait) => wait.matcher.eventName)]),
  ].sort();
  if (locks.length === 0) return;
  await unit.tx.lockWaits(locks);
  await claimSignals(unit, signals);
  // A callback's POST may have come before its wait: stored under an ID the callback step gives.
  for (const { draft, matcher } of callbacks) {
    const callbackStep = draft.callbackSteps.get(matcher.stepId);
    const early = callbackStep === undefined ? null : await unit.tx.getEvent(callbackEventId(draft.run.id, callbackStep));
    if (early) resolveWait(draft, unit.env(draft), matcher.stepId, early);
  }
  for (const { draft, matcher, since } of lookBacks) {
    const taken = eventsOfRun(draft);
    const accept = (event: EventRecord) => !taken.has(event.id) && matcherAccepts(matcher, draft.event, event);
    const first = await unit.tx.firstEventSince(matcher.eventName, since, matcher.expiresAt, accept, matchedText(matcher));
    if (first) resolveWait(draft, unit.env(draft), matcher.stepId, first);
  }
}

/**
 * Resumes the run waiting for the signal `event` carries; the run and step, or undefined when
 * no run waits for it. The caller stored the event in the same transaction.
 */
export async function deliverSignal(unit: WaitsUnit, event: EventRecord): Promise<{ runId: string; stepId: string } | undefined> {
  const signal = (event.data as { signal: string }).signal;
  for (const holder of await unit.tx.findMatchers(SIGNAL_EVENT, signal)) {
    const draft = await unit.load(holder.runId);
    if (!draft) continue;
    if (resolveWait(draft, unit.env(draft), holder.stepId, event)) return { runId: holder.runId, stepId: holder.stepId };
  }
  return undefined;
}

/**
 * The lock a signal's waits are claimed under: a name no event can have (senders may not use
 * `stepwise/`), so claims of one signal queue behind each other and nothing else does.
 */
const signalLock = (signal: string) => `${SIGNAL_EVENT}#${signal}`;
const signalOf = (matcher: MatcherRecord) => matcher.matchValue as string;

/**
 * One run waits for a signal at a time. A new wait whose signal another wait holds (in another
 * run, or a parallel branch of its own) fails its step (`onConflict: "fail"`, the default), or
 * takes the signal over (`"replace"`): the other wait stops listening and resolves `null` at its
 * timeout. A wait of another app is never taken over: names are shared by the executor's apps,
 * and one app must not take another's signals or learn its runs. Called under the signals'
 * locks, so two new waits of one signal never both win.
 */
async function claimSignals(unit: WaitsUnit, waits: NewWait[]): Promise<void> {
  const claimedHere = new Map<string, NewWait>();
  for (const wait of waits) {
    const { draft, matcher } = wait;
    const step = draft.step(matcher.stepId);
    if (step?.status !== "waiting") continue;
    const signal = signalOf(matcher);
    const stored = (await unit.tx.findMatchers(SIGNAL_EVENT, signal)).filter((m) => !(m.runId === matcher.runId && m.stepId === matcher.stepId) && !unit.loaded(m.runId)?.closedMatcher(m.stepId));
    const here = claimedHere.get(signal);
    const holders = [...stored, ...(here && here.draft.step(here.matcher.stepId)?.status === "waiting" ? [here.matcher] : [])];
    const label = `${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}"`;
    // Names are shared by every app of the executor: another app's wait is never replaced, nor named.
    const ours = await unit.appOfRun(draft.run.id);
    let foreign = false;
    for (const other of holders) if ((await unit.appOfRun(other.runId)) !== ours) foreign = true;
    if (foreign) {
      failSignalWait(unit, draft, step, `a run of another app already waits for signal "${signal}". Signal names are shared by every app of this executor: prefix yours with your app (e.g. "${ours ?? "shop"}/approval/<requestId>")`);
      continue;
    }
    if (holders.length > 0 && draft.signalConflicts.get(matcher.stepId) !== "replace") {
      const other = holders[0]!;
      failSignalWait(
        unit,
        draft,
        step,
        `run ${other.runId} (step "${other.stepId}") already waits for signal "${signal}". ` +
          `Give each waiting run a signal of its own (e.g. "approval/<requestId>"), or pass onConflict: "replace" to take the signal over.`,
      );
      continue;
    }
    for (const other of holders) {
      const holdingDraft = unit.loaded(other.runId);
      if (holdingDraft) holdingDraft.closeMatcher(other.stepId);
      else await unit.tx.dropMatcher(other.runId, other.stepId);
      draft.info(`${label} took signal "${signal}" over from run ${other.runId} (step "${other.stepId}"), which will resolve null at its timeout`);
    }
    claimedHere.set(signal, wait);
  }
}

/** A signal wait that may not claim its name: its step fails with `SignalConflict`, saying why. */
function failSignalWait(unit: WaitsUnit, draft: RunDraft, step: StepRecord, why: string): void {
  draft.closeMatcher(step.id);
  draft.dropJobs({ kind: "wait-timeout", stepId: step.id });
  stepAttemptFailed(draft, unit.env(draft), step, serializedError("SignalConflict", `step.waitForSignal "${step.name}": ${why}`), false);
}

/**
 * Where a new wait's look-back starts: when its run became due, or, with a `lookback`, that
 * long before (a little more than the look-back before the wait began: never less). Undefined:
 * no look-back (a unit not applying an invocation).
 */
function sinceOf({ draft, matcher }: NewWait, readyAt: Date | undefined, now: number): Date | undefined {
  const lookbackMs = draft.lookbacks.get(matcher.stepId);
  if (lookbackMs === undefined) return readyAt;
  return new Date((readyAt?.getTime() ?? now) - lookbackMs);
}

/**
 * Text that the stored data of every event a matcher accepts contains, for the store to filter
 * on before it reads events: a primitive match value inside `data`, as JSON. Events are stored
 * as JSON.stringify wrote their data, and that writes a string, number or boolean the same
 * wherever it sits, so an equal value is that text. Left to the full check: objects (their key
 * order may differ); a path through `length`, which the path walk reads off an array or a
 * string though no JSON holds it; numbers JSON writes with an exponent, which data stored while
 * the column was jsonb holds in Postgres's own notation (review found all three).
 */
function matchedText(matcher: MatcherRecord): string | undefined {
  const { matchPath, matchValue: value } = matcher;
  if (!matchPath?.startsWith("data.") || matchPath.split(".").includes("length")) return undefined;
  if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") return undefined;
  const text = JSON.stringify(value);
  return typeof value === "number" && /e/i.test(text) ? undefined : text;
}

/**
 * Events a look-back must not hand the run: those that started it, and those its waits already
 * received. A window reaching back before the run's start would otherwise find its own trigger,
 * and each wait of a loop the same earliest event.
 */
function eventsOfRun(draft: RunDraft): Set<string> {
  const taken = new Set(draft.runEvents().map((event) => event.id));
  for (const step of draft.steps()) {
    const received = step.kind === "wait" && step.status === "completed" ? (step.output as { id?: unknown } | null | undefined)?.id : undefined;
    if (typeof received === "string") taken.add(received);
  }
  return taken;
}
