/**
 * One job, start to finish. An invocation reads the run outside any transaction, calls the app
 * (which may take long), then applies the answer; a timer applies its transition. Either way
 * the change and the deletion of the job commit together, and only while this worker still
 * holds the job's lease: a worker that lost it (it stalled, another took over, the run ended)
 * has its result dropped whole.
 *
 * The change is tried first as one optimistic statement against the state this worker read
 * (or just committed: the previous step's commit is the next invocation's snapshot). When the
 * run moved meanwhile, or the change reaches other runs, the same transition runs again in a
 * transaction on the run as it then is.
 *
 * A job that keeps failing inside the executor (not in the app: those are answers) is given up
 * after {@link MAX_JOB_FAILURES}: its run fails with the cause, instead of being retried forever.
 */
import { PROTOCOL_VERSION, toMs, type InvokeRequestWire } from "@stepwise/protocol";
import { formatDuration } from "../log.ts";
import { afterCommit, describe, machineEnv, type EngineContext } from "../context.ts";
import { DeploymentGone, isRefusedValue, LeaseLostError, serializedError } from "../errors.ts";
import { deploymentOf, type DeploymentRefusals } from "../deployments.ts";
import { acceptedKeysOf, invokeApp, signingKeyOf, type FullFormFallback, type InvokerOptions } from "../invoker.ts";
import { fetchStep, sealFetchRequests } from "./fetch-job.ts";
import { traceInvocation } from "../tracing.ts";
import { pause } from "../machine/pauses.ts";
import { leaseToken } from "./checkpoints.ts";
import { commitAnsweredStep } from "./answered-step.ts";
import { runCronTick } from "./cron.ts";
import { heldKeys } from "../concurrency.ts";
import type { CompactFormRefusals } from "./compact-refusals.ts";
import { hasUnreadOutputs, outputBudget, readsCompactSteps, requestSteps } from "./request-steps.ts";
import type { InvocationSnapshots, KnownStates } from "./known-states.ts";
import type { JobHandling } from "./lanes.ts";
import type { FreedSlotNotices } from "./freed-slots.ts";
import type { FetchesInFlight } from "./fetches-in-flight.ts";
import { applyAnswer } from "../machine/answer.ts";
import { RunDraft, type MachineEnv } from "../machine/draft.ts";
import { finish } from "../machine/ending.ts";
import { expectedJobs, settle } from "../machine/progress.ts";
import { fireTimer } from "../machine/timers.ts";
import { eventForApp, isTerminal, type FunctionRecord, type JobRecord, type RunState } from "../records.ts";
import { UnitOfWork, type UnitOptions } from "../unit/unit.ts";

/** Failures of one job inside the executor before its run fails with the last of them. */
export const MAX_JOB_FAILURES = 5;

export interface JobRunner {
  ctx: EngineContext;
  invoker: InvokerOptions;
  owner: string;
  leaseMs: number;
  /** Run states this process's commits left, for the continuations and timers they queued. */
  known: KnownStates;
  /** Invocations in flight here, moved on by the checkpoints this process commits for them. */
  snapshots: InvocationSnapshots;
  /** Tells the queue of concurrency slots the jobs here gave up, off the lanes. */
  freedSlots: FreedSlotNotices;
  /** Requests made for fetch steps, stopped when their run ends. */
  fetches: FetchesInFlight;
  /** Connections refused by pinned deployments: when their runs move (see deployments.ts). */
  refusals: DeploymentRefusals;
  /** URLs whose instance refused the compact form of stored steps lately: they get every field. */
  compactRefusals: CompactFormRefusals;
}

type Transition = (draft: RunDraft, env: MachineEnv) => void;
const nothing: Transition = () => {};

/**
 * Runs `job`, come by as `how` says (see `Lanes`). A timer this process fires itself without a
 * claim is applied only as one guarded statement that takes the job, or not at all (the claim
 * loop then runs it as any other).
 */
export async function runJob(runner: JobRunner, job: JobRecord, how: JobHandling = {}): Promise<JobRecord[]> {
  if (job.kind === "cron") return how.unclaimed ? [] : (await runCronTick(runner.ctx, job, runner.owner), []);
  const known = runner.known.take(job);
  if (job.failures >= MAX_JOB_FAILURES) return giveUp(runner, job, job.lastError ?? "unknown cause");
  if (how.unclaimed) return job.kind === "invoke" ? [] : runTimer(runner, job, known, how);
  try {
    return job.kind === "invoke" ? await runInvocation(runner, job, known, how) : await runTimer(runner, job, known, how);
  } catch (error) {
    // The store refused a value it can never take: retrying would fail the same way.
    if (isRefusedValue(error)) return giveUp(runner, job, describe(error));
    throw error;
  }
}

async function runTimer(runner: JobRunner, job: JobRecord, known: RunState | undefined, how: JobHandling): Promise<JobRecord[]> {
  await runner.ctx.registry.ensureFresh();
  // The state is kept for the invocation the wake-up continues into: read as that would read it.
  const state = known ?? (await runner.ctx.store.loadRunState(job.runId, { maxOutputBytes: runner.ctx.limits.maxRequestOutputBytes }));
  return complete(runner, job, state, (draft, env) => fireTimer(draft, env, job), how);
}

/**
 * The end of a job read as paused. The read is a snapshot: the run may be resumed before the
 * commit, whose transaction then meets it live. Its resume wrote no job of this one's purpose
 * (this job held its place in the unique index: a pause keeps a job holding a concurrency
 * slot), so deleting this one alone would leave the run with nothing to move it on. The jobs
 * the run's state calls for are queued then, as the resume queues them (one per purpose: those
 * the resume did write stay as they are).
 */
const unlessResumed: Transition = (draft) => {
  if (draft.run.paused || isTerminal(draft.run.status)) return;
  for (const wanted of expectedJobs(draft.state(draft.run.version))) draft.enqueue(wanted);
};

/** How often one job may find the deployment it invoked gone and prepare again for another. */
const MOVES_PER_JOB = 2;

/**
 * Invokes the app for `job` until an answer ends the job. An answer that only ran the run's
 * next step is committed under the job's lease, and the same job invokes the app again
 * (`answered-step.ts`): a loop here, so a long run holds nothing per step it took.
 */
async function runInvocation(runner: JobRunner, job: JobRecord, known: RunState | undefined, how: JobHandling): Promise<JobRecord[]> {
  let state = known;
  for (;;) {
    const outcome = await invokeOnce(runner, job, state, how);
    if (!("again" in outcome)) return outcome;
    state = outcome.again;
  }
}

/** The job's end, or the state to invoke the app from again under the same job (undefined: read it). */
type Invoked = JobRecord[] | { again: RunState | undefined };

async function invokeOnce(runner: JobRunner, job: JobRecord, known: RunState | undefined, how: JobHandling, moves = 0): Promise<Invoked> {
  const { ctx } = runner;
  // Outputs larger than a request's whole budget would only be left out of it: they stay in the store.
  let state = known ?? (await ctx.store.loadRunState(job.runId, { maxOutputBytes: ctx.limits.maxRequestOutputBytes }));
  if (!state || isTerminal(state.run.status)) return complete(runner, job, state, nothing, how);
  const fn = await ctx.registry.getFunction(state.run.functionId);
  let app = fn && (await ctx.registry.getApp(fn.appId));
  if (!fn || !app) {
    const error = serializedError("FunctionNotFound", `Function ${state.run.functionId} is not registered with the executor`);
    return complete(runner, job, state, (draft, env) => finish(draft, env, { status: "failed", error }), how);
  }
  // A paused run is invoked no further: a job it kept (one holding a concurrency slot) or one
  // claimed as the pause committed ends here, freeing its slot (or, resumed before this commit,
  // hands its place to the job the resume could not write: `unlessResumed`). A paused
  // function's run that was queued before the pause (waiting on a slot, a throttle, a batch) is
  // held at its start.
  if (state.run.paused) return complete(runner, job, state, unlessResumed, how);
  if (fn.pausedAt && !job.stepId && state.run.status === "queued" && state.steps.length === 0) {
    return complete(runner, job, state, (draft) => pause(draft, { at: fn.pausedAt!, by: "function" }), how);
  }
  const late = startedTooLate(state, fn, ctx.clock.now());
  if (late && !job.stepId) return complete(runner, job, state, (draft, env) => finish(draft, env, { status: "cancelled", reason: late }), how);
  // Its version's deployment, whose SDK may understand less than the current one. A version this
  // executor has not heard of yet was registered through another: reload once.
  let deployment = deploymentOf(app, state.run);
  if (deployment.unknown) {
    await ctx.registry.refresh();
    app = (await ctx.registry.getApp(app.id)) ?? app;
    deployment = deploymentOf(app, state.run);
  }
  const budget = outputBudget(deployment, ctx.limits);
  // An app that cannot read outputs back gets them all, as it always did.
  if (budget === Infinity && hasUnreadOutputs(state)) state = (await ctx.store.loadRunState(job.runId)) ?? state;
  const { run, steps, event } = state;
  const target = job.stepId ? steps.find((step) => step.id === job.stepId) : undefined;
  // A targeted job whose step was settled meanwhile (a duplicate after a crash) has nothing to do.
  if (job.stepId && (!target || (target.status !== "planned" && target.status !== "retrying"))) {
    return complete(runner, job, state, nothing, how);
  }
  // A step.fetch is the executor's to carry out: no invocation of the app.
  if (target?.kind === "fetch" || target?.kind === "ai") {
    const request = runner.fetches.track(run.id);
    let stored: Transition;
    try {
      stored = await fetchStep(ctx, target, acceptedKeysOf(runner.invoker, app.id), { fetch: runner.invoker.fetch, signal: request.signal });
    } finally {
      request.done();
    }
    if (request.signal.aborted) ctx.log.info(`run ${run.id} ended while step "${target.name}" waited for its request: the request or its answer is dropped`);
    try {
      return await complete(runner, job, state, stored, how);
    } catch (error) {
      if (error instanceof LeaseLostError && (await keepForPausedRun(ctx, job.runId, stored))) return [];
      throw error;
    }
  }
  // The target is left out: to the SDK it is a new step, the one it must run.
  const sentSteps = target ? steps.filter((step) => step !== target) : steps;
  const compact = readsCompactSteps(deployment) && !runner.compactRefusals.sendsInFull(app, deployment);
  const request: InvokeRequestWire = {
    version: PROTOCOL_VERSION,
    run: { id: run.id, appId: app.id, functionId: fn.localId, attempt: target ? target.attempts : run.attempt },
    event: eventForApp(event),
    events: (state.events ?? [event]).map(eventForApp),
    steps: requestSteps(sentSteps, budget, compact),
    targetStep: target?.id,
    // Checkpoints prove this claim of the job; a targeted invocation runs its one step and answers.
    ...(target ? {} : { checkpoint: { token: leaseToken(job, runner.owner), batches: true } }),
  };
  // Asked again in full when the app answers 400 (see `FullFormFallback`): an SDK answers 400
  // before anything of the function runs. Not without steps: the same bytes again, in the same
  // second, would be the same signature, which the app refuses as a replay instead of saying what it did.
  const fallback: FullFormFallback | undefined =
    compact && sentSteps.length > 0
      ? {
          request: () => ({ ...request, steps: requestSteps(sentSteps, budget, false) }),
          refused: () => runner.compactRefusals.refused(app, deployment),
          fullForm: (read, reason) => runner.compactRefusals.fullForm(app, deployment, read, reason),
        }
      : undefined;
  const startedAt = ctx.clock.now();
  const snapshot = target ? state : runner.snapshots.open(job.id, state);
  let response: Awaited<ReturnType<typeof invokeApp>>;
  try {
    const traced = { id: run.id, functionId: run.functionId, attempt: request.run.attempt, traceparent: run.traceparent };
    response = await traceInvocation(traced, target?.id, (headers) => invokeApp(runner.invoker, deployment, fn.localId, request, headers, fallback));
  } catch (error) {
    // Nothing ran there: prepared again (the request too, for the SDK where the run goes now).
    if (!(error instanceof DeploymentGone) || moves >= MOVES_PER_JOB) throw error;
    await runner.refusals.leave(ctx, app, run, deployment, error);
    return invokeOnce(runner, job, undefined, how, moves + 1);
  } finally {
    runner.snapshots.close(job.id);
  }
  await runner.refusals.answered(ctx, app, run, deployment, response);
  const answered = await commitAnsweredStep(ctx, { job, owner: runner.owner, leaseMs: runner.leaseMs, snapshot, startedAt, goOn: how.goOn }, response);
  if (!answered.usual) return { again: answered.from };
  // Transitions read the registry's cache: load what this answer will need first.
  await ctx.registry.ensureFresh();
  if (response.type === "ops") {
    for (const op of response.ops) if (op.op === "invoke") await ctx.registry.getFunction(op.functionId);
  }
  // The requests of new step.fetch ops are kept sealed (their headers may hold keys).
  const sealedRequests = response.type === "ops" ? await sealFetchRequests(response.ops, signingKeyOf(runner.invoker, app.id)) : undefined;
  return complete(runner, job, snapshot, (draft, env) => applyAnswer(draft, sealedRequests ? { ...env, sealedRequests } : env, { targetStepId: target?.id, startedAt, knownSteps: steps.length }, response), how);
}

/**
 * Why a run that never started may not start now (it waited in the queue past its function's
 * `timeouts.start`), or undefined. Checked when its first invocation is about to go out: a run
 * never starts late, though while every lane is busy it is cancelled when one frees up rather
 * than at the deadline itself.
 */
function startedTooLate(state: RunState, fn: FunctionRecord, now: number): string | undefined {
  const limit = fn.config.timeouts?.start;
  // (A rerun's steps were copied in, not run: it has not started either.)
  if (limit === undefined || state.run.status !== "queued" || (state.steps.length > 0 && !state.run.rerunFrom)) return undefined;
  const waited = now - state.run.startedAt.getTime();
  return waited > toMs(limit) ? `timeouts.start: the run waited ${formatDuration(waited)} to start, over its function's ${limit}` : undefined;
}

/** The executor could not apply this job, again and again: end the run with the cause. */
async function giveUp(runner: JobRunner, job: JobRecord, cause: string): Promise<JobRecord[]> {
  const what = job.kind === "invoke" ? (job.stepId ? `result of step "${job.stepId}"` : "answer of an invocation") : `${job.kind} timer of step "${job.stepId}"`;
  const error = serializedError("ExecutorError", `Stepwise could not apply the ${what} (${job.failures} failed attempts): ${cause}`);
  runner.ctx.log.error(`run ${job.runId}: giving up job ${job.id}: ${error.message}`);
  await runner.ctx.registry.ensureFresh();
  const state = await runner.ctx.store.loadRunState(job.runId);
  return complete(runner, job, state, (draft, env) => finish(draft, env, { status: "failed", error }));
}

/**
 * Applies `transition` to the run and deletes the job, in one commit: optimistically from
 * `state` when the change stays within the run, else in a transaction on the locked run.
 * Returns the continuation this worker runs next, if the change queued one. An unclaimed job
 * goes only the optimistic way (taken in that statement), or is left for the claim loop. A job
 * the queue never heard of (`how.unpublished`) is not told to it as done: with Redis as the
 * queue that was a round trip per step for nothing.
 */
async function complete(runner: JobRunner, job: JobRecord, state: RunState | null, transition: Transition, how: JobHandling = {}): Promise<JobRecord[]> {
  const held = heldKeys(job);
  if (held.length === 0) return commit(runner, job, state, transition, how);
  let next: JobRecord[];
  try {
    next = await commit(runner, job, state, transition, how);
  } catch (error) {
    // Taken from this worker (the run was cancelled, say): its slots went with it.
    if (error instanceof LeaseLostError) runner.freedSlots.tell(held);
    throw error;
  }
  // A continuation keeps the slots; without one they are free for the runs waiting on them.
  if (next.length === 0) runner.freedSlots.tell(held);
  return next;
}

/**
 * The answer of a request the executor made for a run paused meanwhile (the pause took the job):
 * stored all the same, so the resumed run does not make the request again (a model call paid
 * twice). The paused run gets no job from it; its resume queues what its state calls for. False
 * when the run is not paused (it ended: a cancel is final, and the answer goes; or another
 * worker holds its job now, and that worker stores its own answer).
 */
async function keepForPausedRun(ctx: EngineContext, runId: string, transition: Transition): Promise<boolean> {
  const outcome = await ctx.store.transaction(async (tx) => {
    const unit = new UnitOfWork(tx, ctx, {});
    const draft = await unit.load(runId);
    if (!draft?.run.paused || isTerminal(draft.run.status)) return undefined;
    transition(draft, unit.env(draft));
    return unit.commit();
  });
  if (!outcome) return false;
  await afterCommit(ctx, outcome);
  return true;
}

async function commit(runner: JobRunner, job: JobRecord, state: RunState | null, transition: Transition, how: JobHandling): Promise<JobRecord[]> {
  const { ctx, owner, leaseMs } = runner;
  const fence = { jobId: job.id, owner, unclaimed: how.unclaimed };
  if (state) {
    const draft = new RunDraft(state);
    transition(draft, machineEnv(ctx, state.run.functionId));
    settle(draft);
    draft.leaseNext({ owner, leaseMs }, job.kind === "invoke");
    if (!draft.needsUnit) {
      const written = await ctx.store.applyOptimistically(state, fence, draft.change);
      if (written) {
        await afterCommit(ctx, { lines: draft.lines, signals: draft.signals, queued: written.queued, deleted: told(written.deleted, job, how) });
        return handOver(runner, written, draft.state(written.version));
      }
    }
  }
  if (how.unclaimed) return [];
  const outcome = await ctx.store.transaction(async (tx) => {
    const options: UnitOptions = { continuation: { runId: job.runId, owner, leaseMs, holdsSlot: job.kind === "invoke" } };
    const unit = new UnitOfWork(tx, ctx, options);
    // The run's row first, then the job's: the order every transaction takes them (a checkpoint,
    // a cancel), so none waits for the other in a cycle.
    const draft = await unit.load(job.runId);
    const done = await tx.completeJob(fence);
    if (!done) throw new LeaseLostError(job.id);
    // Read at the commit: waits opened now look back to when the job became due.
    options.readyAt = done.readyAt;
    if (draft) transition(draft, unit.env(draft));
    const committed = await unit.commit();
    // The job itself is gone too: a queue outside the record must hear of it (or it hands the job out again).
    committed.deleted.push(job.id);
    return { ...committed, deleted: told(committed.deleted, job, how) };
  });
  await afterCommit(ctx, outcome);
  return handOver(runner, outcome, outcome.states.get(job.runId));
}

/** The deleted jobs the queue must hear of: all but `job` itself when the queue never had it. */
function told(deleted: string[], job: JobRecord, how: JobHandling): string[] {
  return how.unpublished ? deleted.filter((id) => id !== job.id) : deleted;
}

/** Keeps the run's new state for what the commit queued, and returns the continuation this lane runs next. */
function handOver(runner: JobRunner, written: { queued: JobRecord[]; continued?: JobRecord }, state: RunState | undefined): JobRecord[] {
  runner.known.queued(written.queued, state, Date.now());
  if (!written.continued) return [];
  if (state) runner.known.continuation(written.continued.id, state);
  return [written.continued];
}
