/**
 * The invocation of a `step.fetch` step: the executor makes the request itself (see
 * `fetch-steps.ts`) and the step gets the response, or a failed attempt, as a `step.run`
 * would. It runs as the step's targeted invocation job, so it has that job's lease (kept alive
 * while the request takes its time), its retries and backoff, and its concurrency slot.
 */
import { readTokenUsage, type FetchResponse, type Op, type TokenUsage } from "@stepwise/protocol";
import type { EngineContext } from "../context.ts";
import { serializedError } from "../errors.ts";
import { openRequest, performFetch, sealRequest, type FetchOutcome } from "../fetch-steps.ts";
import type { MachineEnv, RunDraft } from "../machine/draft.ts";
import { stepAttemptFailed, stepRan } from "../machine/steps.ts";
import type { StepRecord } from "../records.ts";

/** Makes the request of `target` (a planned or retrying fetch step); the transition that stores what came of it. */
export async function fetchStep(
  ctx: EngineContext,
  target: StepRecord,
  /** The keys its request may be sealed under: the app's, with the next one during a rotation. */
  secrets: readonly string[],
  /** `signal` aborts the request (its run ended). */
  how: { fetch?: typeof fetch; signal?: AbortSignal },
): Promise<(draft: RunDraft, env: MachineEnv) => void> {
  let sealed = (target.output as { sealedRequest?: unknown } | undefined)?.sealedRequest;
  // A request over the read's output budget was left out of the state: read it alone.
  if (sealed === undefined) sealed = ((await ctx.store.listSteps(target.runId, { ids: [target.id] }))[0]?.output as { sealedRequest?: unknown } | undefined)?.sealedRequest;
  let outcome: FetchOutcome;
  try {
    if (typeof sealed !== "string") throw new Error("its request is not stored");
    outcome = await performFetch(await openRequest(secrets, sealed), { maxBytes: ctx.limits.maxStepOutputBytes, ...how });
  } catch (error) {
    outcome = { ok: false, error: serializedError("FetchFailed", `step.fetch "${target.name}": ${(error as Error).message}`), retriable: false };
  }
  return (draft, env) => {
    const step = draft.step(target.id);
    // Settled meanwhile (a duplicate after a crash): nothing to do.
    if (!step || (step.status !== "planned" && step.status !== "retrying")) return;
    const result = outcome.ok && step.kind === "ai" ? modelAnswer(step, outcome.response) : outcome;
    if (!result.ok) stepAttemptFailed(draft, env, step, result.error, result.retriable, result.retryAt);
    else if ("json" in result) stepRan(draft, env, step, result.json, result.usage);
    else stepRan(draft, env, step, result.response);
    // A step that failed for good keeps no request: its secrets go with it.
    const after = draft.step(target.id)!;
    if (after.status === "failed" && after.output !== undefined) draft.saveStep({ ...after, output: undefined });
  };
}

/**
 * A model call's answer (`step.ai.infer`): its JSON, which the step resolves to, and the tokens
 * it reports (OpenAI's `usage.prompt_tokens`/`completion_tokens`, Anthropic's
 * `usage.input_tokens`/`output_tokens`). An error status fails the step with the provider's own
 * message; one that is not JSON fails it too.
 */
function modelAnswer(step: StepRecord, response: FetchResponse): { ok: true; json: unknown; usage?: TokenUsage } | FetchOutcome {
  let json: unknown;
  try {
    json = response.bodyEncoding === "text" ? JSON.parse(response.body) : undefined;
  } catch {
    json = undefined;
  }
  if (response.status >= 400) {
    const said = (json as { error?: { message?: unknown } | string } | undefined)?.error;
    const message = typeof said === "string" ? said : typeof said?.message === "string" ? said.message : response.body.slice(0, 500);
    return { ok: false, error: serializedError("ModelCallFailed", `step.ai.infer "${step.name}": the provider answered ${response.status}: ${message}`), retriable: false };
  }
  if (json === undefined) return { ok: false, error: serializedError("ModelCallFailed", `step.ai.infer "${step.name}": the provider's answer is not JSON`), retriable: false };
  return { ok: true, json, ...usageIn(json) };
}

/** The tokens an OpenAI-compatible or Anthropic answer reports, with its model. */
function usageIn(answer: unknown): { usage?: TokenUsage } {
  const { usage, model } = (answer ?? {}) as { usage?: unknown; model?: unknown };
  const read = readTokenUsage(usage, { input: ["prompt_tokens", "input_tokens"], output: ["completion_tokens", "output_tokens"] }, model);
  return read ? { usage: read } : {};
}

/** The requests of an answer's `step.fetch` ops, sealed under `secret` (the run's app's signing key), by step ID. */
export async function sealFetchRequests(ops: readonly Op[], secret: string): Promise<Map<string, string> | undefined> {
  let sealed: Map<string, string> | undefined;
  for (const op of ops) if (op.op === "fetch") (sealed ??= new Map()).set(op.id, await sealRequest(secret, op.request));
  return sealed;
}
