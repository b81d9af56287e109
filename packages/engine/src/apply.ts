/**
 * What an invocation answered, applied to the run: one handler per answer type and per op,
 * all inside the transaction that also completes the invocation's job. Callers hold the
 * run's lock. A step that is already final is never written again, so a duplicate answer
 * (an invocation repeated after a crash) cannot overwrite a committed result.
 */
import type { InvokeResponse, Op, SerializedError } from "@stepwise/protocol";
import { backoffDelay } from "./backoff.ts";
import type { Unit } from "./context.ts";
import { serializedError } from "./errors.ts";
import { finishRun } from "./finish.ts";
import { formatBytes, jsonBytes } from "./limits.ts";
import { formatDuration, runLabel } from "./log.ts";
import { continueRun } from "./progress.ts";
import { IN_FLIGHT_STEP_STATUSES, type FunctionRecord, type RunRecord, type StepRecord } from "./records.ts";
import { applyInvokeOp, applySendOp, applySleepOp, applyWaitOp } from "./apply-ops.ts";

/** What the applier needs to know about the invocation that produced the answer. */
export interface Invocation {
  run: RunRecord;
  fn: FunctionRecord;
  /** The step the invocation targeted, if any. */
  targetStep?: string;
  startedAt: Date;
}

export async function applyResponse(unit: Unit, inv: Invocation, response: InvokeResponse): Promise<void> {
  if (inv.run.status === "queued") {
    await unit.tx.updateRun(inv.run.id, { status: "running" });
    inv.run.status = "running";
    unit.info(`${runLabel(inv.run.id, inv.fn.id)} started`);
  }
  switch (response.type) {
    case "completed":
      return finishRun(unit, inv.run, { status: "completed", output: response.output });
    case "error":
      return applyFunctionError(unit, inv, response.error, response.retriable, response.retryAt);
    case "ops":
      return applyOps(unit, inv, response.ops);
  }
}

/** The function threw outside a step: retry the whole invocation, or fail the run. */
export async function applyFunctionError(
  unit: Unit,
  inv: Invocation,
  error: SerializedError,
  retriable: boolean,
  retryAt?: string,
): Promise<void> {
  const { run, fn } = inv;
  if (!retriable || run.attempt >= fn.config.retries) {
    return finishRun(unit, run, { status: "failed", error });
  }
  const attempt = run.attempt + 1;
  const at = retryAt ? new Date(retryAt) : new Date(Date.now() + backoffDelay(run.attempt, backoffOf(unit, fn)));
  await unit.tx.updateRun(run.id, { attempt });
  run.attempt = attempt;
  await unit.enqueue([{ kind: "invoke", runId: run.id, runAt: at }]);
  unit.warn(
    `${runLabel(run.id, fn.id)} attempt ${attempt} of ${fn.config.retries + 1} failed: ${error.name}: ${error.message}; ` +
      `retrying in ${formatDuration(at.getTime() - Date.now())}`,
  );
}

export function backoffOf(unit: Unit, fn: FunctionRecord) {
  return { ...unit.ctx.backoff, ...fn.config.backoff };
}

async function applyOps(unit: Unit, inv: Invocation, ops: Op[]): Promise<void> {
  const steps = new Map((await unit.steps(inv.run.id)).map((step) => [step.id, step]));
  const added = ops.filter((op) => !steps.has(op.id)).length;
  if (steps.size + added > unit.ctx.limits.maxStepsPerRun) {
    const error = serializedError(
      "StepLimitExceeded",
      `Run reached ${steps.size + added} steps; the limit is ${unit.ctx.limits.maxStepsPerRun} steps per run. ` +
        `Split the work across runs (step.invoke or step.sendEvent) or raise maxStepsPerRun.`,
    );
    return finishRun(unit, inv.run, { status: "failed", error });
  }
  const inFlight = [...steps.values()].some((step) => IN_FLIGHT_STEP_STATUSES.includes(step.status));
  if (ops.length === 0 && !inFlight) {
    return applyFunctionError(unit, inv, stalledError(), true);
  }
  for (const op of ops) {
    const existing = steps.get(op.id);
    if (existing && !canReplace(existing, op)) continue;
    await applyOp(unit, inv, op, existing);
  }
  if (inv.run.status !== "failed") await continueRun(unit, inv.run);
}

function stalledError(): SerializedError {
  return serializedError(
    "FunctionStalled",
    "The function neither returned nor reached a step: every await outside a step must settle within one invocation",
  );
}

/**
 * Whether an op may be written over the step stored under its ID: only a result for a step
 * that is waiting for one (planned or retrying). Everything else is a duplicate to drop.
 */
function canReplace(existing: StepRecord, op: Op): boolean {
  const open = existing.status === "planned" || existing.status === "retrying";
  return open && (op.op === "step-ran" || op.op === "step-failed");
}

async function applyOp(unit: Unit, inv: Invocation, op: Op, existing: StepRecord | undefined): Promise<void> {
  const base: StepRecord = existing ?? {
    runId: inv.run.id,
    id: op.id,
    name: op.name,
    kind: kindOf(op),
    position: op.position,
    status: "planned",
    attempts: 0,
    startedAt: inv.startedAt,
  };
  switch (op.op) {
    case "step-ran":
      return applyStepRan(unit, inv, base, op.output);
    case "step-failed":
      return applyStepFailed(unit, inv, base, op.error, op.retriable, op.retryAt);
    case "step-planned":
      await unit.saveStep({ ...base, status: "planned" });
      return unit.enqueue([{ kind: "invoke", runId: inv.run.id, stepId: op.id }]);
    case "sleep":
      return applySleepOp(unit, inv, base, op);
    case "wait":
      return applyWaitOp(unit, inv, base, op);
    case "send":
      return applySendOp(unit, inv, base, op);
    case "invoke":
      return applyInvokeOp(unit, inv, base, op);
  }
}

function kindOf(op: Op): StepRecord["kind"] {
  if (op.op === "step-ran" || op.op === "step-failed" || op.op === "step-planned") return "run";
  return op.op;
}

async function applyStepRan(unit: Unit, inv: Invocation, step: StepRecord, output: unknown): Promise<void> {
  const bytes = jsonBytes(output);
  const limit = unit.ctx.limits.maxStepOutputBytes;
  if (bytes > limit) {
    const error = serializedError(
      "StepOutputTooLarge",
      `Step "${step.name}" returned ${formatBytes(bytes)}; the limit is ${formatBytes(limit)}. ` +
        `Store large data elsewhere and return a reference to it.`,
    );
    return applyStepFailed(unit, inv, step, error, false);
  }
  const endedAt = new Date();
  await unit.saveStep({ ...step, status: "completed", output: output ?? null, attempts: step.attempts + 1, endedAt });
  const took = formatDuration(endedAt.getTime() - inv.startedAt.getTime());
  unit.info(`${runLabel(inv.run.id, inv.fn.id)} step "${step.name}" completed in ${took}`);
}

async function applyStepFailed(
  unit: Unit,
  inv: Invocation,
  step: StepRecord,
  error: SerializedError,
  retriable: boolean,
  retryAt?: string,
): Promise<void> {
  const attempts = step.attempts + 1;
  const retries = inv.fn.config.retries;
  const label = `${runLabel(inv.run.id, inv.fn.id)} step "${step.name}"`;
  if (retriable && attempts <= retries) {
    const at = retryAt ? new Date(retryAt) : new Date(Date.now() + backoffDelay(attempts - 1, backoffOf(unit, inv.fn)));
    await unit.saveStep({ ...step, status: "retrying", error, attempts });
    await unit.enqueue([{ kind: "invoke", runId: inv.run.id, stepId: step.id, runAt: at }]);
    unit.warn(
      `${label} attempt ${attempts} of ${retries + 1} failed: ${error.name}: ${error.message}; ` +
        `retrying in ${formatDuration(at.getTime() - Date.now())}`,
    );
    return;
  }
  await unit.saveStep({ ...step, status: "failed", error, attempts, endedAt: new Date() });
  unit.warn(`${label} failed for good after ${attempts} attempt(s): ${error.name}: ${error.message}`);
}
