/**
 * The invocation of a `step.fetch` step: the executor makes the request itself (see
 * `fetch-steps.ts`) and the step gets the response, or a failed attempt, as a `step.run`
 * would. It runs as the step's targeted invocation job, so it has that job's lease (kept alive
 * while the request takes its time), its retries and backoff, and its concurrency slot.
 */
import type { Op } from "@stepwise/protocol";
import type { EngineContext } from "../context.ts";
import { serializedError } from "../errors.ts";
import { openRequest, performFetch, sealRequest, type FetchOutcome } from "../fetch-steps.ts";
import type { MachineEnv, RunDraft } from "../machine/draft.ts";
import { stepAttemptFailed, stepRan } from "../machine/steps.ts";
import type { StepRecord } from "../records.ts";

/** Makes the request of `target` (a planned or retrying fetch step); the transition that stores what came of it. */
export async function fetchStep(ctx: EngineContext, target: StepRecord, secret: string, fetchImpl: typeof fetch | undefined): Promise<(draft: RunDraft, env: MachineEnv) => void> {
  let sealed = (target.output as { sealedRequest?: unknown } | undefined)?.sealedRequest;
  // A request over the read's output budget was left out of the state: read it alone.
  if (sealed === undefined) sealed = ((await ctx.store.listSteps(target.runId, { ids: [target.id] }))[0]?.output as { sealedRequest?: unknown } | undefined)?.sealedRequest;
  let outcome: FetchOutcome;
  try {
    if (typeof sealed !== "string") throw new Error("its request is not stored");
    outcome = await performFetch(await openRequest(secret, sealed), { maxBytes: ctx.limits.maxStepOutputBytes, fetch: fetchImpl });
  } catch (error) {
    outcome = { ok: false, error: serializedError("FetchFailed", `step.fetch "${target.name}": ${(error as Error).message}`), retriable: false };
  }
  return (draft, env) => {
    const step = draft.step(target.id);
    // Settled meanwhile (a duplicate after a crash): nothing to do.
    if (!step || (step.status !== "planned" && step.status !== "retrying")) return;
    if (outcome.ok) stepRan(draft, env, step, outcome.response);
    else stepAttemptFailed(draft, env, step, outcome.error, outcome.retriable, outcome.retryAt);
    // A step that failed for good keeps no request: its secrets go with it.
    const after = draft.step(target.id)!;
    if (after.status === "failed" && after.output !== undefined) draft.saveStep({ ...after, output: undefined });
  };
}

/** The requests of an answer's `step.fetch` ops, sealed under `secret` (the run's app's signing key), by step ID. */
export async function sealFetchRequests(ops: readonly Op[], secret: string): Promise<Map<string, string> | undefined> {
  let sealed: Map<string, string> | undefined;
  for (const op of ops) if (op.op === "fetch") (sealed ??= new Map()).set(op.id, await sealRequest(secret, op.request));
  return sealed;
}
