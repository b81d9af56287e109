/**
 * One op of an answer applied to its step: a result (`step-ran`, `step-failed`), a branch to
 * run later (`step-planned`), or a step the executor settles itself (sleep, wait, send,
 * invoke), each arranging what will settle it: a job, a matcher, an effect on other runs.
 */
import { CALLBACK_EVENT, derivedEventId, FUNCTION_INVOKED_EVENT, MAX_CALLBACK_TIMEOUT_MS, RESERVED_EVENT_PREFIX, SIGNAL_EVENT, type Op, type SerializedError, type StepRetryPolicy, type TokenUsage } from "@stepwise/protocol";
import { backoffDelay, resolveBackoff } from "../backoff.ts";
import { InputError, serializedError } from "../errors.ts";
import { parseSentEvents } from "../event-input.ts";
import { formatBytes, jsonBytes, NotStorableError } from "../limits.ts";
import { formatDuration, runLabel } from "../log.ts";
import { eventForApp, type EventRecord, type StepRecord } from "../records.ts";
import type { MachineEnv, RunDraft } from "./draft.ts";
import { newMatcher } from "./waits.ts";
import { fetchTarget, fetchUrlProblem } from "../fetch-steps.ts";

type OpOf<K extends Op["op"]> = Extract<Op, { op: K }>;

/** Longest error message and stack kept: errors are stored and sent back on every invocation. */
const MAX_ERROR_TEXT = 16 * 1024;

export function kindOf(op: Op): StepRecord["kind"] {
  if (op.op === "step-ran" || op.op === "step-failed" || op.op === "step-planned") return "run";
  if (op.op === "wait-signal" || op.op === "wait-callback") return "wait";
  if (op.op === "fetch" && op.ai) return "ai";
  return op.op;
}

/** A new step as an op first reports it. */
export function newStep(draft: RunDraft, op: Op, startedAt: number): StepRecord {
  return {
    runId: draft.run.id,
    id: op.id,
    name: op.name,
    kind: kindOf(op),
    position: op.position,
    status: "planned",
    attempts: 0,
    startedAt: new Date(startedAt),
  };
}

export function applyOp(draft: RunDraft, env: MachineEnv, op: Op, step: StepRecord): void {
  switch (op.op) {
    case "step-ran":
      return stepRan(draft, env, step, op.output, op.usage);
    case "step-failed":
      return stepAttemptFailed(draft, env, step, op.error, op.retriable, op.retryAt, op);
    case "step-planned":
      draft.saveStep({ ...step, status: "planned", retry: ownPolicy(op) });
      return draft.enqueue({ kind: "invoke", stepId: step.id });
    case "sleep":
      return sleep(draft, step, op);
    case "wait":
      return wait(draft, env, step, op);
    case "wait-signal":
      return waitForSignal(draft, step, op);
    case "callback":
      return createCallback(draft, env, step, op);
    case "wait-callback":
      return waitForCallback(draft, env, step, op);
    case "fetch":
      return planFetch(draft, env, step, op);
    case "send":
      return send(draft, env, step, op);
    case "invoke":
      return invoke(draft, env, step, op);
  }
}

export function stepRan(draft: RunDraft, env: MachineEnv, step: StepRecord, output: unknown, usage?: TokenUsage): void {
  const bytes = storableBytes(output);
  if (typeof bytes === "string") {
    return stepAttemptFailed(draft, env, step, serializedError("StepOutputNotStorable", `Step "${step.name}" returned a value that cannot be stored: ${bytes}`), false);
  }
  const { maxStepOutputBytes, maxRunStateBytes } = env.limits;
  if (bytes > maxStepOutputBytes) {
    const error = serializedError(
      "StepOutputTooLarge",
      `Step "${step.name}" returned ${formatBytes(bytes)}; the limit is ${formatBytes(maxStepOutputBytes)}. ` +
        `Store large data elsewhere and return a reference to it.`,
    );
    return stepAttemptFailed(draft, env, step, error, false);
  }
  if (draft.run.stateBytes + bytes > maxRunStateBytes) {
    const error = serializedError(
      "RunStateTooLarge",
      `Step "${step.name}" returned ${formatBytes(bytes)}, and the run's stored results would pass ${formatBytes(maxRunStateBytes)}. ` +
        `Keep large results elsewhere and return references, or split the work across runs (step.invoke).`,
    );
    return stepAttemptFailed(draft, env, step, error, false);
  }
  const endedAt = new Date(env.now);
  draft.saveStep({ ...step, status: "completed", output: output ?? null, ...(usage && { usage }), attempts: step.attempts + 1, endedAt });
  draft.patchRun({ stateBytes: draft.run.stateBytes + bytes });
  const took = formatDuration(endedAt.getTime() - step.startedAt.getTime());
  draft.info(`${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}" completed in ${took}`);
}

/**
 * An attempt of a `run` step failed: retry it with backoff while retries remain, else it fails
 * for good. `policy` is the step's own (sent with its failure); the function's applies without.
 */
export function stepAttemptFailed(
  draft: RunDraft,
  env: MachineEnv,
  step: StepRecord,
  thrown: SerializedError,
  retriable: boolean,
  retryAt?: string,
  policy?: StepRetryPolicy,
): void {
  const error = boundedError(thrown);
  const attempts = step.attempts + 1;
  // The app's report wins; a failure it could not report (a 502 page) goes by what it said before.
  const retry = policy ? ownPolicy(policy) : step.retry;
  const retries = retry?.retries ?? env.fn?.config.retries ?? 0;
  const backoff = retry?.backoff ? resolveBackoff(env.backoff, retry.backoff) : env.backoff;
  const label = `${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}"`;
  draft.patchRun({ stateBytes: draft.run.stateBytes + jsonBytes(error) - (step.error ? jsonBytes(step.error) : 0) });
  if (retriable && attempts <= retries) {
    const when = retryAt ? { runAt: new Date(retryAt) } : { delayMs: backoffDelay(attempts - 1, backoff) };
    // When the retry is due, kept on the step: a run resumed or repaired retries then, not at once.
    const wakeAt = when.runAt ?? new Date(env.now + when.delayMs!);
    draft.saveStep({ ...step, status: "retrying", error, attempts, retry, wakeAt });
    draft.enqueue({ kind: "invoke", stepId: step.id, ...when });
    draft.warn(`${label} attempt ${attempts} of ${retries + 1} failed: ${error.name}: ${error.message}; retrying ${describeWhen(when, env.now)}`);
    return;
  }
  draft.saveStep({ ...step, status: "failed", error, attempts, retry, endedAt: new Date(env.now) });
  draft.warn(`${label} failed for good after ${attempts} attempt(s): ${error.name}: ${error.message}`);
}

/** The retry policy an op reports for its step, or undefined when the step has none of its own. */
function ownPolicy(op: StepRetryPolicy): StepRetryPolicy | undefined {
  if (op.retries === undefined && op.backoff === undefined) return undefined;
  return { ...(op.retries !== undefined && { retries: op.retries }), ...(op.backoff && { backoff: op.backoff }) };
}

function sleep(draft: RunDraft, step: StepRecord, op: OpOf<"sleep">): void {
  const wakeAt = new Date(op.until);
  draft.saveStep({ ...step, status: "sleeping", wakeAt });
  draft.enqueue({ kind: "wake", stepId: step.id, runAt: wakeAt });
  draft.info(`${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}" sleeping until ${wakeAt.toISOString()}`);
}

function wait(draft: RunDraft, env: MachineEnv, step: StepRecord, op: OpOf<"wait">): void {
  // The executor's own events carry other runs' data (a failure's error and event): no run waits for them.
  if (op.event.startsWith(RESERVED_EVENT_PREFIX)) {
    const error = serializedError("InvalidWait", `step.waitForEvent "${step.name}": events named "${RESERVED_EVENT_PREFIX}…" are the executor's own; wait for an event of yours`);
    return stepAttemptFailed(draft, env, step, error, false);
  }
  const expiresAt = new Date(op.timeoutAt);
  const label = `${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}"`;
  const matcher = newMatcher(draft, { stepId: step.id, kind: "wait", eventName: op.event, match: op.match, if: op.if, expiresAt });
  draft.saveStep({ ...step, status: "waiting", wakeAt: expiresAt });
  draft.openMatcher(matcher, { lookbackMs: op.lookbackMs });
  draft.enqueue({ kind: "wait-timeout", stepId: step.id, runAt: expiresAt });
  const condition = op.match ? ` matching ${op.match}` : op.if ? ` where ${op.if}` : "";
  const lookback = op.lookbackMs ? `, looking back ${formatDuration(op.lookbackMs)}` : "";
  draft.info(`${label} waiting for ${op.event}${condition} until ${expiresAt.toISOString()}${lookback}`);
  if (op.match !== undefined && matcher.matchValue === undefined) {
    draft.warn(`${label}: the triggering event has no ${op.match}, so no event can match; the wait will time out`);
  }
}

/**
 * A wait for a signal is a wait for the executor's signal event whose `data.signal` is the name:
 * a matcher with that value frozen. Whether another run waits for the same signal is for the
 * unit to find out (`claimSignals`), under a lock on the name.
 */
function waitForSignal(draft: RunDraft, step: StepRecord, op: OpOf<"wait-signal">): void {
  const expiresAt = new Date(op.timeoutAt);
  const matcher = newMatcher(draft, { stepId: step.id, kind: "wait", eventName: SIGNAL_EVENT, value: { path: "data.signal", is: op.signal }, expiresAt });
  draft.saveStep({ ...step, status: "waiting", wakeAt: expiresAt });
  draft.openMatcher(matcher, { onConflict: op.onConflict ?? "fail" });
  draft.enqueue({ kind: "wait-timeout", stepId: step.id, runAt: expiresAt });
  draft.info(`${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}" waiting for signal "${op.signal}" until ${expiresAt.toISOString()}`);
}

/** A callback URL, minted by the unit (it signs, which takes a moment): the step completes then. */
function createCallback(draft: RunDraft, env: MachineEnv, step: StepRecord, op: OpOf<"callback">): void {
  const expiresAt = new Date(op.expiresAt);
  const lifetime = expiresAt.getTime() - env.now;
  if (!(lifetime > 0 && lifetime <= MAX_CALLBACK_TIMEOUT_MS + 60_000)) {
    const error = serializedError("InvalidCallback", `step.createCallback "${step.name}": its timeout must be between 1ms and 7d (it expires at ${op.expiresAt})`);
    return stepAttemptFailed(draft, env, step, error, false);
  }
  draft.saveStep({ ...step, status: "planned" });
  draft.emit({ type: "mint-callback", runId: draft.run.id, stepId: step.id, expiresAt });
}

/**
 * A wait for the POST to one of the run's callbacks: a matcher on the executor's callback event
 * for that callback's ID. A POST that came first is found by the unit, by its derived ID.
 */
function waitForCallback(draft: RunDraft, env: MachineEnv, step: StepRecord, op: OpOf<"wait-callback">): void {
  const created = draft.steps().find((s) => s.kind === "callback" && s.status === "completed" && (s.output as { id?: unknown } | null)?.id === op.callback);
  if (!created) {
    const error = serializedError("InvalidWait", `step.waitForCallback "${step.name}": this run created no callback "${op.callback}"; pass what its step.createCallback returned`);
    return stepAttemptFailed(draft, env, step, error, false);
  }
  const expiresAt = new Date(op.timeoutAt);
  const matcher = newMatcher(draft, { stepId: step.id, kind: "wait", eventName: CALLBACK_EVENT, value: { path: "data.callback", is: op.callback }, expiresAt });
  draft.saveStep({ ...step, status: "waiting", wakeAt: expiresAt });
  draft.openMatcher(matcher, { callbackStep: created.id });
  draft.enqueue({ kind: "wait-timeout", stepId: step.id, runAt: expiresAt });
  draft.info(`${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}" waiting for a POST to callback "${created.name}" until ${expiresAt.toISOString()}`);
}

/**
 * A `step.fetch`: planned, with its request sealed where its output will be, and an invocation
 * of the step queued, which the executor carries out itself (`runtime/fetch-job.ts`).
 */
function planFetch(draft: RunDraft, env: MachineEnv, step: StepRecord, op: OpOf<"fetch">): void {
  const problem = fetchUrlProblem(op.request.url);
  const sealedRequest = env.sealedRequests?.get(step.id);
  if (problem || !sealedRequest) {
    const error = serializedError("InvalidFetch", `step.fetch "${step.name}": ${problem ?? "its request could not be kept"}`);
    return stepAttemptFailed(draft, env, step, error, false);
  }
  draft.saveStep({ ...step, status: "planned", output: { sealedRequest }, retry: ownPolicy(op) });
  draft.enqueue({ kind: "invoke", stepId: step.id });
  draft.info(`${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}" will fetch ${fetchTarget(op.request)}`);
}

/** Validates the events like the events API does; stored (IDs derived from run and step) by the unit. */
function send(draft: RunDraft, env: MachineEnv, step: StepRecord, op: OpOf<"send">): void {
  let events: EventRecord[];
  try {
    events = parseSentEvents(op.events, env.limits, env.now, (index) => derivedEventId(draft.run.id, step.id, index));
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    return stepAttemptFailed(draft, env, step, serializedError("InvalidEvent", `step.sendEvent "${step.name}": ${error.message}`), false);
  }
  draft.saveStep({ ...step, status: "completed", output: { ids: events.map((e) => e.id) }, attempts: 1, endedAt: new Date(env.now) });
  // The runs they start join the sender's trace.
  const { traceparent } = draft.run;
  draft.emit({ type: "send", events: traceparent ? events.map((event) => ({ ...event, traceparent })) : events });
  draft.info(`${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}" sent ${events.map((e) => e.name).join(", ")}`);
}

function invoke(draft: RunDraft, env: MachineEnv, step: StepRecord, op: OpOf<"invoke">): void {
  const label = `${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}"`;
  const target = env.findFunction(op.functionId);
  if (!target) {
    const error = serializedError("FunctionNotFound", `step.invoke: no function "${op.functionId}" is registered; sync the app that defines it`);
    return stepAttemptFailed(draft, env, step, error, false);
  }
  const caller = env.fn?.appId;
  if (target.appId !== caller && (env.isolatedApps.has(target.appId) || (caller !== undefined && env.isolatedApps.has(caller)))) {
    const error = serializedError("InvokeNotAllowed", `step.invoke: "${op.functionId}" is another app's, and an app with a signing key of its own neither invokes nor is invoked across apps`);
    return stepAttemptFailed(draft, env, step, error, false);
  }
  const data = op.data ?? {};
  const event: EventRecord = { id: derivedEventId(draft.run.id, step.id, "invoke"), name: FUNCTION_INVOKED_EVENT, data, ts: env.now, ...(draft.run.traceparent && { traceparent: draft.run.traceparent }) };
  const problem = invokeDataProblem(data, storableBytes(eventForApp(event)), env.limits.maxEventBytes);
  if (problem) return stepAttemptFailed(draft, env, step, serializedError("InvalidEvent", `step.invoke "${step.name}": ${problem}`), false);
  const timeoutAt = op.timeoutAt ? new Date(op.timeoutAt) : undefined;
  draft.saveStep({ ...step, status: "invoking", ...(timeoutAt && { wakeAt: timeoutAt }) });
  draft.emit({ type: "start-child", fn: target, event, parent: { runId: draft.run.id, stepId: step.id } });
  if (timeoutAt) draft.enqueue({ kind: "invoke-timeout", stepId: step.id, runAt: timeoutAt });
  draft.info(`${label} invoking ${target.id}`);
}

function invokeDataProblem(data: unknown, bytes: number | string, limit: number): string | null {
  if (typeof data !== "object" || data === null || Array.isArray(data)) return "data must be a JSON object";
  if (typeof bytes === "string") return `data cannot be stored: ${bytes}`;
  return bytes > limit ? `data is ${formatBytes(bytes)}; the limit is ${formatBytes(limit)}` : null;
}

/** The JSON size of a value, or why it cannot be stored. */
export function storableBytes(value: unknown): number | string {
  try {
    return jsonBytes(value);
  } catch (error) {
    if (error instanceof NotStorableError) return error.message;
    throw error;
  }
}

/** Errors come back into every later invocation: keep their text within bounds. */
export function boundedError(error: SerializedError): SerializedError {
  const clip = (text: string) => (text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT)}… (truncated)` : text);
  const bounded: SerializedError = { name: clip(error.name), message: clip(error.message) };
  if (error.stack !== undefined) bounded.stack = clip(error.stack);
  return bounded;
}

export function describeWhen(when: { runAt?: Date; delayMs?: number }, now: number): string {
  if (when.runAt) return `at ${when.runAt.toISOString()} (in ${formatDuration(Math.max(0, when.runAt.getTime() - now))})`;
  return `in ${formatDuration(when.delayMs ?? 0)}`;
}
