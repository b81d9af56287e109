/**
 * What an invocation request carries of its run's steps: every step, in order, each done (an
 * output or an error) or still pending; outputs up to a byte budget, and past it only their
 * size, which the app reads back from the executor (`POST /api/step-outputs`, see
 * {@link readStepOutputs}) before it replays. The request then stays the same size however much
 * the run has stored, under what a serverless host accepts.
 */
import { APP_FEATURES, globalFunctionId, StepOutputsRequestSchema, type StepOutputsResponse, type WireStep, issuesText } from "@stepwise/protocol";
import type { EngineContext } from "../context.ts";
import { InputError } from "../errors.ts";
import { jsonBytes, type Limits } from "../limits.ts";
import type { AppRecord, RunState, StepRecord } from "../records.ts";

/**
 * How many bytes of outputs an invocation of `app` carries: the limit, for an SDK that reads
 * the rest back; everything for one that never declared it can (it would take a step sent by
 * size alone for a step that returned nothing).
 */
export function outputBudget(app: Pick<AppRecord, "features">, limits: Limits): number {
  return app.features.includes(APP_FEATURES.outputsBySize) ? limits.maxRequestOutputBytes : Infinity;
}

/** Whether `state` was read without some of its outputs (see `Store.loadRunState`). */
export function hasUnreadOutputs(state: RunState): boolean {
  return state.steps.some((step) => step.outputBytes !== undefined && step.output === undefined);
}

/** How `app` reads the steps of a request: each in the compact form, for an SDK that declared it can. */
export function readsCompactSteps(app: Pick<AppRecord, "features">): boolean {
  return app.features.includes(APP_FEATURES.compactSteps);
}

/**
 * The steps for a request, outputs inlined in order while they fit in `budgetBytes`; `compact`,
 * each without the fields that hold their usual value (see `WireStep`).
 */
export function requestSteps(steps: readonly StepRecord[], budgetBytes: number, compact: boolean): WireStep[] {
  let left = budgetBytes;
  return steps.map((step, index) => {
    let sent = sentForm(step, compact);
    if (step.status === "completed") {
      // Not read with the run: larger than the whole budget, so it goes by size anyway.
      const unread = step.outputBytes !== undefined && step.output === undefined;
      const bytes = unread ? step.outputBytes! : outputBytes(step);
      if (!unread && bytes <= left) left -= bytes;
      else sent = leftOut(sent, bytes);
    }
    // A step off its index says where it is (those after a targeted invocation's own, left out).
    return compact && step.position !== index ? { ...sent, position: step.position } : sent;
  });
}

/**
 * Step records are never changed in place (a change writes a new one), so each is converted
 * and measured once, not once per invocation of a run that replays it again and again.
 */
function sentForm(step: StepRecord, compact: boolean): WireStep {
  const forms = compact ? compactForms : fullForms;
  let sent = forms.get(step);
  if (!sent) forms.set(step, (sent = compact ? asCompact(step) : asFull(step)));
  return sent;
}

const fullForms = new WeakMap<StepRecord, WireStep>();
const compactForms = new WeakMap<StepRecord, WireStep>();
const sizes = new WeakMap<StepRecord, number>();

function asFull(step: StepRecord): WireStep {
  const { id, name, kind, position } = step;
  if (step.status === "completed") return { id, name, kind, position, status: "completed", output: step.output ?? null };
  if (step.status === "failed") return { id, name, kind, position, status: "failed", error: step.error };
  return { id, name, kind, position, status: "pending" };
}

/** The compact form, its position left out: {@link requestSteps} adds it where it is not the index. */
function asCompact(step: StepRecord): WireStep {
  const sent: WireStep = { id: step.id };
  if (step.name !== step.id) sent.name = step.name;
  if (step.kind !== "run") sent.kind = step.kind;
  if (step.status === "completed") sent.output = step.output ?? null;
  else if (step.status === "failed") (sent.status = "failed"), (sent.error = step.error);
  else sent.status = "pending";
  return sent;
}

function outputBytes(step: StepRecord): number {
  let bytes = sizes.get(step);
  if (bytes === undefined) sizes.set(step, (bytes = jsonBytes(step.output ?? null)));
  return bytes;
}

function leftOut(sent: WireStep, bytes: number): WireStep {
  const { output: _, ...rest } = sent;
  return { ...rest, outputBytes: bytes };
}

/**
 * Answers `POST /api/step-outputs` (signed by `appId`, already verified): the outputs of the
 * asked steps of one of that app's runs. A run of another app, or none, is a 404; asked steps
 * that are not stored and completed are left out of the answer.
 */
export async function readStepOutputs(ctx: EngineContext, body: unknown, appId: string): Promise<StepOutputsResponse> {
  const parsed = StepOutputsRequestSchema.safeParse(body);
  if (!parsed.success) {
    const problems = issuesText(parsed.error.issues, "body");
    throw new InputError(`Not a Stepwise step-outputs request: ${problems}`);
  }
  const { run: asked, steps: ids } = parsed.data;
  if (asked.appId !== appId) throw new InputError(`Step outputs refused: the request is for app "${asked.appId}" but signed for app "${appId}"`);
  // As for checkpoints: only the app that holds the function reads its runs.
  const functionId = globalFunctionId(appId, asked.functionId);
  const [fn, run] = await Promise.all([ctx.registry.getFunction(functionId), ctx.store.getRun(asked.id)]);
  if (!fn || fn.appId !== appId || !run || run.functionId !== functionId) {
    throw new InputError(`No run ${asked.id} of function "${asked.functionId}" in app "${appId}"`, 404);
  }
  const steps = await ctx.store.listSteps(run.id, { ids });
  return { steps: steps.filter((step) => step.status === "completed").map((step) => ({ id: step.id, output: step.output ?? null })) };
}
