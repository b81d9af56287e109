/**
 * Runs an operator starts again (`POST /api/runs/:id/replay` and `/rerun`): a new run of the
 * same function from the same event (a batch's run: the same events), on the code registered
 * now. A replay starts from the top. A rerun keeps the replayed run's steps before the one it
 * runs again from, optionally with that step's output replaced, so what came before is not done
 * again: an agent's model calls before the step that went wrong are not paid for twice.
 *
 * Starting a run again is the operator's decision, so the rules that decide whether an event
 * starts a run at all (idempotency, rateLimit, debounce, singleton, batching) do not hold it
 * back; its throttle, concurrency limits and priority apply as to any run (what they protect is
 * called the same either way), its cancelOn listens from the new start, and its timeouts count
 * from there.
 */
import { findTextProblem } from "@stepwise/protocol";
import { z } from "zod";
import { InputError } from "../errors.ts";
import { formatBytes, jsonBytes, NotStorableError, type Limits } from "../limits.ts";
import { runLabel } from "../log.ts";
import type { RunDraft } from "../machine/draft.ts";
import type { FunctionRecord, RunState, StepRecord } from "../records.ts";
import type { UnitOfWork } from "./unit.ts";
import { throttleStart } from "./admission.ts";
import { finish } from "../machine/ending.ts";

/** What a rerun keeps: the steps before `fromStep`, and `fromStep` itself when its output is given. */
export interface Rerun {
  fromStep: string;
  /** Present (even as null): `fromStep` is stored completed with this output, and the run goes on after it. */
  output?: { value: unknown };
}

const RerunSchema = z
  .object({
    fromStep: z.string().min(1, "fromStep is empty").max(1_000),
    output: z.unknown().optional(),
  })
  .strict();

/** The body of `POST /api/runs/:id/rerun`: `{ fromStep, output? }`; an `InputError` says what is wrong. */
export function parseRerun(body: unknown, limits: Limits): Rerun {
  const parsed = RerunSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
    throw new InputError(`Invalid rerun: ${where}${issue?.message ?? "it does not match"}; send { "fromStep": "<step ID>", "output"?: <JSON> }`);
  }
  const problem = findTextProblem(parsed.data.fromStep, "fromStep");
  if (problem) throw new InputError(`Invalid rerun: ${problem}`);
  const rerun: Rerun = { fromStep: parsed.data.fromStep };
  if ("output" in (body as object)) {
    const value = parsed.data.output ?? null;
    let bytes: number;
    try {
      bytes = jsonBytes(value);
    } catch (error) {
      if (error instanceof NotStorableError) throw new InputError(`Invalid rerun: output cannot be stored: ${error.message}`);
      throw error;
    }
    if (bytes > limits.maxStepOutputBytes) {
      throw new InputError(`Rerun refused: output is ${formatBytes(bytes)}; a step's output may be at most ${formatBytes(limits.maxStepOutputBytes)}`, 413);
    }
    rerun.output = { value };
  }
  return rerun;
}

/** Step kinds whose output a rerun may replace: those that resolve to a value. */
const REPLACEABLE = new Set(["run", "wait", "invoke"]);

/**
 * Starts `fn` again for the run `original` (as the record holds it, outputs whole), in `unit`;
 * the new run's draft. An `InputError` when `rerun` names no step of the run, or one whose
 * output cannot be replaced.
 */
export async function startReplay(unit: UnitOfWork, fn: FunctionRecord, original: RunState, rerun?: Rerun): Promise<RunDraft> {
  const kept = rerun ? keptSteps(original, rerun, unit.ctx.clock.now()) : [];
  const draft = await unit.startRun(fn, original.event);
  draft.startedFrom(original.run.id, rerun?.fromStep);
  if (original.events) {
    draft.openedBatch();
    for (const event of original.events.slice(1)) draft.joinedBatch(event);
    await unit.tx.insertRunEvents(draft.run.id, original.events.map((event) => event.id));
  }
  draft.restoreSteps(kept.map((step) => ({ ...step, runId: draft.run.id })));
  const { maxRunStateBytes } = unit.ctx.limits;
  if (draft.run.stateBytes > maxRunStateBytes) {
    throw new InputError(`Rerun refused: the steps it keeps hold ${formatBytes(draft.run.stateBytes)} of results, over a run's limit of ${formatBytes(maxRunStateBytes)}`, 413);
  }
  const label = runLabel(draft.run.id, fn.id);
  await throttle(unit, fn, draft);
  draft.info(rerun ? `${label} reruns run ${original.run.id} from step "${rerun.fromStep}", keeping ${kept.length} step(s)` : `${label} replays run ${original.run.id}`);
  return draft;
}

/** A run started again takes a start of its function's throttle: delayed, or skipped past its `timeouts.start`. */
export async function throttle(unit: UnitOfWork, fn: FunctionRecord, draft: RunDraft): Promise<void> {
  const throttled = await throttleStart(unit.tx, fn, draft.event);
  if (typeof throttled === "string") finish(draft, unit.env(draft), { status: "skipped", reason: throttled });
  else if (throttled > 0) draft.delayStart(throttled);
}

/** The steps a rerun starts with: the finished ones before `fromStep`, and `fromStep` with its new output. */
function keptSteps(original: RunState, rerun: Rerun, now: number): StepRecord[] {
  const from = original.steps.find((step) => step.id === rerun.fromStep);
  if (!from) {
    const ids = original.steps.map((step) => `"${step.id}"`);
    const listed = ids.length === 0 ? "it has none" : `its steps are ${ids.slice(0, 20).join(", ")}${ids.length > 20 ? ", …" : ""}`;
    throw new InputError(`Run ${original.run.id} has no step "${rerun.fromStep.slice(0, 200)}": ${listed}`);
  }
  if (rerun.output && !REPLACEABLE.has(from.kind)) {
    throw new InputError(`Step "${from.id}" is a ${from.kind} step, which has no output to replace: rerun from it without an output, or from a run, wait or invoke step`);
  }
  // Restored as of the rerun's start: they were done once, before it, and not again.
  const at = new Date(now);
  const kept: StepRecord[] = original.steps
    .filter((step) => step.position < from.position && (step.status === "completed" || step.status === "failed"))
    .map((step) => ({ ...step, startedAt: at, endedAt: at }));
  if (rerun.output) {
    const { error: _dropped, wakeAt: _none, ...rest } = from;
    kept.push({ ...rest, status: "completed", output: rerun.output.value, attempts: Math.max(1, from.attempts), startedAt: at, endedAt: at });
  }
  return kept;
}
