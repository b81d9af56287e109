/**
 * What an invocation answered, applied to its run. An untargeted invocation replays the whole
 * function: it completed, threw outside any step (a body attempt failed), or reports the ops it
 * reached. A targeted invocation ran one step (a parallel branch or a retry): whatever went
 * wrong on the way (the app unreachable, a 502 page, a timeout, garbage) is an attempt of that
 * step, so the step is retried or fails and the run moves on either way.
 *
 * A step that is already final is never written again: a duplicate answer (after a crash or a
 * lost answer) or a duplicated op cannot overwrite a committed result.
 */
import type { InvokeResponse, Op, SerializedError } from "@stepwise/protocol";
import { backoffDelay } from "../backoff.ts";
import { serializedError } from "../errors.ts";
import { runLabel } from "../log.ts";
import { isInFlight, isTerminal, type StepRecord } from "../records.ts";
import type { MachineEnv, RunDraft } from "./draft.ts";
import { finish } from "./ending.ts";
import { formatBytes } from "../limits.ts";
import { applyOp, boundedError, describeWhen, newStep, stepAttemptFailed, storableBytes } from "./steps.ts";

/** What the applier needs to know about the invocation that produced the answer. */
export interface Invocation {
  /** The step the invocation targeted, if any. */
  targetStepId?: string;
  /** When the executor sent it (its clock): new steps start then, or once its checkpointed steps ended. */
  startedAt: number;
  /** Steps the run had when the invocation was sent: more now means its checkpoints stored some. */
  knownSteps?: number;
}

export function applyAnswer(draft: RunDraft, env: MachineEnv, inv: Invocation, response: InvokeResponse): void {
  if (isTerminal(draft.run.status)) return;
  if (draft.run.status === "queued") {
    draft.patchRun({ status: "running" });
    draft.info(`${runLabel(draft.run.id, draft.run.functionId)} started`);
  }
  if (inv.targetStepId !== undefined) return applyTargeted(draft, env, inv.targetStepId, response);
  switch (response.type) {
    case "completed":
      return completed(draft, env, response.output);
    case "error":
      return bodyAttemptFailed(draft, env, response.error, response.retriable, response.retryAt);
    case "ops":
      return applyOps(draft, env, inv, response.ops);
  }
}

/** The function returned: the run completes with its output, if the output can be stored. */
function completed(draft: RunDraft, env: MachineEnv, output: unknown): void {
  const bytes = storableBytes(output);
  const problem =
    typeof bytes === "string" ? bytes : bytes > env.limits.maxStepOutputBytes ? `it is ${formatBytes(bytes)}; the limit is ${formatBytes(env.limits.maxStepOutputBytes)}` : null;
  if (problem) {
    return finish(draft, env, { status: "failed", error: serializedError("OutputNotStorable", `The function's return value cannot be stored: ${problem}`) });
  }
  finish(draft, env, { status: "completed", output });
}

function applyTargeted(draft: RunDraft, env: MachineEnv, stepId: string, response: InvokeResponse): void {
  const step = draft.step(stepId);
  // Settled meanwhile (a duplicate invocation): nothing to do.
  if (!step || (step.status !== "planned" && step.status !== "retrying")) return;
  if (response.type === "error") return stepAttemptFailed(draft, env, step, response.error, response.retriable, response.retryAt);
  const op = response.type === "ops" ? response.ops.find((o) => o.id === stepId && (o.op === "step-ran" || o.op === "step-failed")) : undefined;
  if (!op) {
    const error = serializedError("AppAnswerMissingStep", `The app was asked to run step "${step.name}" and answered without its result`);
    return stepAttemptFailed(draft, env, step, error, true);
  }
  applyOp(draft, env, op, step);
}

function applyOps(draft: RunDraft, env: MachineEnv, inv: Invocation, ops: Op[]): void {
  const known = draft.steps().length;
  const added = new Set(ops.filter((op) => !draft.step(op.id)).map((op) => op.id)).size;
  if (known + added > env.limits.maxStepsPerRun) {
    const error = serializedError(
      "StepLimitExceeded",
      `Run reached ${known + added} steps; the limit is ${env.limits.maxStepsPerRun} steps per run. ` +
        `Split the work across runs (step.invoke or step.sendEvent) or raise maxStepsPerRun.`,
    );
    return finish(draft, env, { status: "failed", error });
  }
  let progressed = false;
  // A step the answer names was reached after the invocation's checkpointed steps had ended
  // (checkpointing stops at the first step that cannot run at once): it starts no earlier.
  // Looked up only when the answer names a new step.
  let reachedAt: number | undefined;
  const newStepAt = () => (reachedAt ??= latestEnd(draft, inv.startedAt));
  // One op per step: a repeated failure in one answer (a proxy that doubled the body) is one attempt, not two.
  const applied = new Set<string>();
  for (const op of ops) {
    if (applied.has(op.id)) continue;
    applied.add(op.id);
    const existing = draft.step(op.id);
    if (existing && !canReplace(existing, op)) continue;
    applyOp(draft, env, op, existing ?? newStep(draft, op, newStepAt()));
    progressed = true;
  }
  // Steps stored by the invocation's checkpoints are progress too, even when the answer repeats
  // the last of them (its checkpoint was committed but the app never heard so).
  if (inv.knownSteps !== undefined && draft.steps().length > inv.knownSteps) {
    progressed = true;
    // Those steps were written by the checkpoints: the run's next invocation is still to work out.
    draft.dirty = true;
  }
  // Nothing new and nothing in flight: re-invoking at once would loop without end.
  if (!progressed && !draft.steps().some(isInFlight)) {
    const message =
      ops.length === 0
        ? "The function neither returned nor reached a step: every await outside a step must settle within one invocation"
        : "The function reported only steps that are already stored and reached nothing new";
    bodyAttemptFailed(draft, env, serializedError("FunctionStalled", message), true);
  }
}

/**
 * Whether an op may be written over the step stored under its ID: only a result for a step
 * that is waiting for one (planned or retrying). Everything else is a duplicate to drop.
 */
function canReplace(existing: StepRecord, op: Op): boolean {
  const open = existing.status === "planned" || existing.status === "retrying";
  return open && (op.op === "step-ran" || op.op === "step-failed");
}

/** The function threw outside a step (or could not be run at all): retry the whole invocation, or fail the run. */
export function bodyAttemptFailed(draft: RunDraft, env: MachineEnv, thrown: SerializedError, retriable: boolean, retryAt?: string): void {
  const { run } = draft;
  const error = boundedError(thrown);
  const retries = env.fn?.config.retries ?? 0;
  if (!retriable || run.attempt >= retries) return finish(draft, env, { status: "failed", error });
  const attempt = run.attempt + 1;
  draft.patchRun({ attempt });
  const when = retryAt ? { runAt: new Date(retryAt) } : { delayMs: backoffDelay(attempt - 1, env.backoff) };
  draft.enqueue({ kind: "invoke", ...when });
  draft.warn(
    `${runLabel(run.id, run.functionId)} attempt ${attempt} of ${retries + 1} failed: ${error.name}: ${error.message}; ` +
      `retrying ${describeWhen(when, env.now)}`,
  );
}

/** The latest end among the run's steps, or `from` if none ended after it. */
function latestEnd(draft: RunDraft, from: number): number {
  let latest = from;
  for (const step of draft.steps()) latest = Math.max(latest, step.endedAt?.getTime() ?? 0);
  return latest;
}
