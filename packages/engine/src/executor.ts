/**
 * The executor as one object: what the HTTP API (Node server or Worker) calls. It ingests
 * events, registers apps, answers run queries, cancels runs, works the queue (as long-lived
 * lanes, or as a bounded drain) and keeps the queue and the record in step.
 */
import type { AppUrlPolicy } from "./app-urls.ts";
import { syncApp, type SyncedApp } from "./app-sync.ts";
import { globalFunctionId, newId, parseTraceparent, type RunMessage, type SignalSent, type StepOutputsResponse } from "@stepwise/protocol";
import { systemClock } from "./clock.ts";
import { afterCommit, describe, machineEnv, type EngineContext } from "./context.ts";
import { InputError, isUnavailable } from "./errors.ts";
import { parseEvents, parseSignal } from "./event-input.ts";
import { CallbackUrls } from "./callback-urls.ts";
import { MessageBell, publishMessages, readMessages, RunOwners, streamTokenAllows } from "./live-messages.ts";
import { acceptedKeysOf, signingKeyOf } from "./invoker.ts";
import { DEFAULT_LIMITS, type Limits } from "./limits.ts";
import { consoleLogger, type Logger } from "./log.ts";
import { finish } from "./machine/ending.ts";
import { isTerminal, TIMER_KINDS } from "./records.ts";
import { Registry } from "./registry.ts";
import { CheckpointRefused, commitCheckpoint, observeCommitted, parseCheckpoint } from "./runtime/checkpoints.ts";
import { runJob, type JobRunner } from "./runtime/jobs.ts";
import type { BulkCancelResult, BulkReplayResult, RunPage } from "./run-list.ts";
import { readEvent, readEventPage, readRun, readRunPage, readRunsOfEvent } from "./run-reads.ts";
import { cancelRuns, pauseFunction, pauseRun, releaseHeldRuns, replayRun, replayRuns, rerunRun, resumeFunction, resumeRun, type FunctionResumed, type Operator } from "./run-actions.ts";
import type { EventPage, EventSummary } from "./event-list.ts";
import { FreedSlotNotices } from "./runtime/freed-slots.ts";
import { readStepOutputs } from "./runtime/request-steps.ts";
import { InvocationSnapshots, KnownStates } from "./runtime/known-states.ts";
import { DeploymentRefusals } from "./deployments.ts";
import { CompactFormRefusals } from "./runtime/compact-refusals.ts";
import { Lanes } from "./runtime/lanes.ts";
import { within } from "./within.ts";
import { pruneExpired, pruneFlowControl, reconcileQueue, repairStrandedRuns } from "./runtime/maintenance.ts";
import { DEFAULT_SIGNAL_GRACE_MS, deliverWithGrace, NobodyWaits, type SignalTry } from "./signal-delivery.ts";
import { traceRunEnds } from "./tracing.ts";
import { FetchesInFlight } from "./runtime/fetches-in-flight.ts";
import { DEFAULT_CONCURRENCY, DEFAULT_RETENTION_MS, type DrainOptions, type DrainResult, type ExecutorOptions } from "./executor-options.ts";
import { UnitOfWork, type UnitOptions, type UnitOutcome } from "./unit/unit.ts";
import { functionView, type FunctionView, type RunView } from "./views.ts";

export class Executor {
  readonly limits: Limits;
  readonly log: Logger;
  private readonly ctx: EngineContext;
  private readonly runner: JobRunner;
  private readonly lanes: Lanes;
  private readonly drains = new Set<Lanes>();
  private maintenance: ReturnType<typeof setInterval> | undefined;
  private maintaining: Promise<void> | undefined;
  private stopRequested = false;
  private readonly messageBell = new MessageBell();
  private readonly runOwners = new RunOwners();

  constructor(private readonly options: ExecutorOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.log = options.log ?? consoleLogger;
    this.ctx = {
      store: options.store,
      registry: new Registry(options.store, options.registryRefreshMs),
      limits: this.limits,
      log: this.log,
      clock: options.clock ?? systemClock,
      backoff: options.backoff ?? {},
      isolatedApps: new Set(Object.keys(options.appSigningKeys ?? {})),
      observe: (signal) => {
        traceRunEnds(signal);
        // A run this process ended stops its requests in flight here at once (others look, see FetchesInFlight).
        if (signal.type === "run-ended") this.runner.fetches.ended([signal.runId]);
        options.observe?.(signal);
      },
      callbacks: new CallbackUrls({ publicUrl: () => (typeof options.publicUrl === "function" ? options.publicUrl() : options.publicUrl), keyOf: (appId) => signingKeyOf(options, appId), keysOf: (appId) => acceptedKeysOf(options, appId), retentionMs: options.retentionMs ?? DEFAULT_RETENTION_MS }),
      onQueued: (jobs) => {
        this.announce();
        // Timers this process committed it fires itself, on time, without a claim.
        this.lanes.fireOwnTimers(jobs.filter((job) => TIMER_KINDS.has(job.kind)));
      },
    };
    const owner = options.workerId ?? `executor-${newId()}`;
    this.runner = {
      ctx: this.ctx,
      owner,
      leaseMs: options.leaseMs ?? 30_000,
      known: new KnownStates(),
      snapshots: new InvocationSnapshots(),
      freedSlots: new FreedSlotNotices(options.store.queue, () => this.announce()),
      fetches: new FetchesInFlight({ endedRuns: (runIds) => options.store.endedRuns(runIds), log: this.log }),
      refusals: new DeploymentRefusals(options.deploymentGoneAfterMs),
      compactRefusals: new CompactFormRefusals(this.log, options.fullFormForMs),
      invoker: {
        signingKey: options.signingKey,
        signingKeyNext: options.signingKeyNext,
        appSigningKeys: options.appSigningKeys,
        timeoutMs: options.invokeTimeoutMs ?? 300_000,
        maxResponseBytes: this.limits.maxResponseBytes,
        fetch: options.fetch,
      },
    };
    this.lanes = this.newLanes(options.concurrency ?? DEFAULT_CONCURRENCY);
  }

  /** Creates the schema, loads the registry and starts working the queue. */
  async start(): Promise<void> {
    await this.options.store.migrate();
    await this.ctx.registry.refresh();
    this.lanes.start();
    const every = this.options.maintenanceMs ?? 15_000;
    this.maintenance = setInterval(() => void this.maintain(), every);
    void this.maintain();
  }

  /**
   * Runs due jobs for about `budgetMs` without the long-lived loop (Workers, alarms, cron),
   * then returns, saying when the next job is due. Needs no `start()`; call `migrate()` on the
   * store once first. Safe beside other executors and other drains: jobs are leased as usual.
   */
  async drain(options: DrainOptions): Promise<DrainResult> {
    const maxJobs = options.maxJobs ?? Infinity;
    const lanes = this.newLanes(Math.max(1, Math.min(options.concurrency ?? 8, maxJobs)));
    this.drains.add(lanes);
    try {
      const result = await lanes.drain(options);
      const nextDueAt = result.nextDueIn === null ? null : new Date(Date.now() + result.nextDueIn);
      return { ran: result.ran, failed: result.failed, stoppedEarly: result.stoppedEarly, nextDueAt };
    } finally {
      this.drains.delete(lanes);
    }
  }

  /** Whether `stop()` was called: long-lived answers (a run's stream) end then. */
  get stopping(): boolean {
    return this.stopRequested;
  }

  /** Stops taking work; running jobs finish (up to `graceMs`, default 10 s) or are given back. */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopRequested = true;
    const deadline = Date.now() + graceMs;
    clearInterval(this.maintenance);
    if (this.maintaining) await within(this.maintaining, deadline);
    await this.lanes.stop(Math.max(0, deadline - Date.now()));
    await within(this.settled(), deadline);
    this.runner.fetches.stop();
  }

  /**
   * Checks the queue against the record: re-adds jobs the queue lost (Redis flushed or failed
   * over), repairs live runs that have no job, and prunes what is past the retention age.
   * Runs one at a time per process.
   */
  maintain(): Promise<void> {
    this.maintaining ??= (async () => {
      try {
        await reconcileQueue(this.ctx);
        await repairStrandedRuns(this.ctx);
        // Runs an ingest held as its function's resume committed: released as that resume said.
        for (const { functionId, held } of await this.ctx.store.findUnreleasedHolds(10)) await releaseHeldRuns(this.operator(), functionId, held);
        const retention = this.options.retentionMs ?? DEFAULT_RETENTION_MS;
        if (retention > 0) await pruneExpired(this.ctx, retention);
        await pruneFlowControl(this.ctx);
      } catch (error) {
        // An unreachable store is reported once per outage by the lanes; say nothing more here.
        if (!isUnavailable(error)) this.log.warn(`queue maintenance failed: ${describe(error)}; will retry`);
      } finally {
        this.maintaining = undefined;
      }
    })();
    return this.maintaining;
  }

  private newLanes(concurrency: number): Lanes {
    return new Lanes({
      queue: this.options.store.queue,
      owner: this.runner.owner,
      concurrency,
      leaseMs: this.runner.leaseMs,
      pollMs: this.options.pollMs ?? 1_000,
      log: this.log,
      observe: this.ctx.observe,
      handle: (job, how) => runJob(this.runner, job, how),
      handedBack: (job) => this.runner.known.forget(job.id),
      settled: () => this.settled(),
    });
  }

  /** What the jobs left to tell in the background, told: freed slots, and deletions to a queue outside the record. */
  private async settled(): Promise<void> {
    await Promise.all([this.runner.freedSlots.settled(), this.options.store.queue.settled?.()]);
  }

  private announce(): void {
    this.lanes.notify();
    for (const lanes of this.drains) lanes.notify();
  }

  /** Runs `fn` on a unit of work in one transaction, then lets the commit take effect. */
  private async inUnit<T>(fn: (unit: UnitOfWork) => Promise<T>, options: UnitOptions = {}): Promise<T> {
    const { result, outcome } = await this.options.store.transaction(async (tx) => {
      const unit = new UnitOfWork(tx, this.ctx, options);
      const result = await fn(unit);
      return { result, outcome: await unit.commit() };
    });
    for (const job of outcome.adopted) {
      const state = outcome.states.get(job.runId);
      if (state) this.runner.known.continuation(job.id, state);
    }
    // Runs started here whose first invocation waits in the queue: when this process claims it, no read.
    const now = Date.now();
    for (const job of outcome.queued) this.runner.known.queued([job], outcome.states.get(job.runId), now);
    // Into the lanes before the queue hears of the rest: a claim woken by it would take the free
    // lanes first, and the jobs leased here (whose state is in hand) would be given back.
    const adopting = this.lanes.adopt(outcome.adopted);
    await afterCommit(this.ctx, outcome satisfies UnitOutcome);
    await adopting;
    return result;
  }

  /**
   * Validates and stores events and everything they cause (runs started, waits resolved,
   * runs cancelled) in one transaction. Throws {@link InputError} and stores nothing on bad input.
   */
  async sendEvents(body: unknown, options: { traceparent?: string } = {}): Promise<{ ids: string[] }> {
    const events = parseEvents(body, this.limits, this.ctx.clock.now());
    // The sender's trace, when it sent a valid one: the runs these events start join it.
    const traceparent = parseTraceparent(options.traceparent) && options.traceparent!.trim().toLowerCase();
    if (traceparent) for (const event of events) event.traceparent = traceparent;
    await this.ctx.registry.ensureFresh();
    // The runs these events start go straight to this process's free lanes: no claim, no read.
    await this.inUnit((unit) => unit.ingest(events), { adopt: this.adoption() });
    return { ids: events.map((event) => event.id) };
  }

  /**
   * Delivers a signal (`POST /api/signals`) to the run waiting for it, trying for the grace
   * period while none does, and no longer once `abort` fires (see `signal-delivery.ts`). Throws
   * {@link InputError}: 400/413 for a bad signal, 404 when no run waited; neither stores anything.
   */
  async sendSignal(body: unknown, options: { abort?: AbortSignal } = {}): Promise<SignalSent> {
    const parsed = parseSignal(body, this.limits, this.ctx.clock.now());
    const attempt: SignalTry = (signal) =>
      this.inUnit(async (unit) => {
        const outcome = await unit.signal(signal);
        if (outcome === undefined) throw new NobodyWaits();
        return outcome;
      }).catch((error: unknown) => (error instanceof NobodyWaits ? undefined : Promise.reject(error)));
    return deliverWithGrace(parsed, this.options.signalGraceMs ?? DEFAULT_SIGNAL_GRACE_MS, attempt, { now: () => this.ctx.clock.now(), abort: options.abort });
  }

  /**
   * Takes the POST to a callback URL (`POST /api/callbacks/:token`, no key: the token is the
   * capability) for the run waiting for it, now or later. Throws {@link InputError}: 403 for a
   * token not signed here, 410 for one expired or of a run that ended, 409 for a callback that
   * had its POST already; none of them stores anything.
   */
  async receiveCallback(token: string, request: { body: unknown; headers: Iterable<[string, string]> }): Promise<{ ok: true }> {
    const { claims, event } = await this.ctx.callbacks.received(token, request, this.limits);
    // Every decision is made under the run's lock and on the store's clock, in the transaction that
    // stores the POST: a 200 means the run has it, or will read it at its wait.
    await this.ctx.registry.ensureFresh();
    await this.inUnit((unit) => unit.callback(claims, event));
    return { ok: true };
  }

  /**
   * Stores what a run published (`POST /api/publish`, whose signature the caller verified for
   * `appId`) and rings this process's streams of the run. Throws {@link InputError} (400, 404,
   * 413) and stores nothing for a bad request (`live-messages.ts`).
   */
  async publish(body: unknown, appId: string): Promise<{ seq: number }> {
    const { runId, seq } = await publishMessages(this.ctx, this.runOwners, body, appId);
    this.messageBell.ring(runId);
    return { seq };
  }

  /** A run's published messages after the `afterSeq`-th, oldest first (a bounded page). */
  runMessages(runId: string, afterSeq: number): Promise<RunMessage[]> {
    return readMessages(this.ctx, runId, afterSeq);
  }

  /** Calls `listener` when this process stores a message of `runId`; returns the unsubscribe. */
  listenForMessages(runId: string, listener: () => void): () => void {
    return this.messageBell.listen(runId, listener);
  }

  /** Whether a stream token (minted by the run's app) lets its holder read `runId`'s stream now. */
  streamTokenAllows(token: string, runId: string): Promise<boolean> {
    return streamTokenAllows(this.ctx, this.runOwners, (appId) => acceptedKeysOf(this.options, appId), token, runId);
  }

  /**
   * Commits one step result of an invocation still running (`POST /api/checkpoints`, whose
   * signature the caller verified for `appId`). Throws `CheckpointRefused` when the invocation
   * may not go on, and an `InputError` for a malformed request or one of another app.
   */
  async checkpoint(body: unknown, appId: string): Promise<void> {
    const request = parseCheckpoint(body);
    if (request.run.appId !== appId) throw new InputError(`Checkpoint rejected: it is for app "${request.run.appId}" but signed for app "${appId}"`);
    // Global IDs join app and function with "-": app "a-b"'s function "c" and app "a"'s "b-c" are
    // one ID, and registration gives it to one app only. Only that app checkpoints its runs.
    const fn = await this.ctx.registry.getFunction(globalFunctionId(appId, request.run.functionId));
    if (!fn || fn.appId !== appId) {
      throw new CheckpointRefused("lease-lost", `Checkpoint refused: app "${appId}" has no function "${request.run.functionId}"`);
    }
    const checkpointed = await commitCheckpoint(this.ctx, this.runner.leaseMs, request);
    observeCommitted(this.ctx, checkpointed, fn.id, this.runner.snapshots.lastEnd(checkpointed.jobId));
    this.runner.snapshots.advance(checkpointed);
  }

  /**
   * The stored outputs an invocation left out (`POST /api/step-outputs`, whose signature the
   * caller verified for `appId`); an `InputError` for a malformed request or another app's run.
   */
  async stepOutputs(body: unknown, appId: string): Promise<StepOutputsResponse> {
    return readStepOutputs(this.ctx, body, appId);
  }

  /**
   * Registers (or updates) an app and its functions (`app-sync.ts`). With `urlPolicy` (a
   * registration the app sent, naming its own URL) the URL must be one the executor may call.
   */
  syncApp(body: unknown, options: { urlPolicy?: AppUrlPolicy; revive?: boolean } = {}): Promise<SyncedApp> {
    return syncApp(this.ctx, body, options);
  }

  async listFunctions(): Promise<FunctionView[]> {
    const apps = new Map((await this.ctx.registry.listApps()).map((app) => [app.id, app]));
    return (await this.ctx.registry.listFunctions()).map((fn) => functionView(fn, apps.get(fn.appId)));
  }

  /** Pauses a function: its new runs start held until it is resumed (`POST /api/functions/:id/pause`). Null when no function has that ID. */
  async pauseFunction(functionId: string): Promise<FunctionView | null> {
    const fn = await pauseFunction(this.operator(), functionId);
    return fn && functionView(fn, this.ctx.registry.cachedApp(fn.appId));
  }

  /**
   * Resumes a paused function (`POST /api/functions/:id/resume`, body `{ held?: "run" | "skip" }`):
   * the runs its pause held start, or end as skipped. Null when no function has that ID.
   */
  async resumeFunction(functionId: string, body: unknown): Promise<(FunctionResumed & { function: FunctionView }) | null> {
    const released = await resumeFunction(this.operator(), functionId, body);
    const fn = released && (await this.ctx.registry.getFunction(functionId));
    return released && fn ? { function: functionView(fn, this.ctx.registry.cachedApp(fn.appId)), ...released } : null;
  }

  /** Pauses a live run: nothing invokes it or fires its timers until it is resumed (`machine/pauses.ts`). */
  pauseRun(runId: string): Promise<RunView | null> {
    return pauseRun(this.operator(), runId);
  }

  /** Resumes a paused run where it stopped: what its state calls for is queued. */
  resumeRun(runId: string): Promise<RunView | null> {
    return resumeRun(this.operator(), runId);
  }

  /** The run's version (bumped by every change of it), or null when there is no such run: a cheap way to see it moved. */
  async runVersion(runId: string): Promise<number | null> {
    return (await this.options.store.getRun(runId))?.version ?? null;
  }

  getRun(runId: string): Promise<RunView | null> {
    return readRun(this.options.store, runId);
  }

  /** A page of runs, newest first, for `GET /api/runs`'s parameters; an `InputError` names a wrong one. */
  listRuns(params: Record<string, string[]>): Promise<RunPage> {
    return readRunPage(this.options.store, params);
  }

  /** One event with the runs it started (`GET /api/events/:id`); null when the store has no such event. */
  getEvent(eventId: string): Promise<Omit<EventSummary, "receivedAt"> | null> {
    return readEvent(this.options.store, eventId);
  }

  listRunsForEvent(eventId: string): Promise<RunView[]> {
    return readRunsOfEvent(this.options.store, eventId);
  }

  /** A page of events, newest first, each with its runs, for `GET /api/events`'s parameters. */
  listEvents(params: Record<string, string[]>): Promise<EventPage> {
    return readEventPage(this.options.store, params);
  }

  /** Cancels a live run; a run that already ended is left as it is. Null when there is no such run. */
  async cancelRun(runId: string, reason = "cancelled through the API"): Promise<RunView | null> {
    await this.ctx.registry.ensureFresh();
    const found = await this.inUnit(async (unit) => {
      const draft = await unit.load(runId);
      if (!draft) return false;
      if (!isTerminal(draft.run.status)) finish(draft, machineEnv(this.ctx, draft.run.functionId), { status: "cancelled", reason });
      return true;
    });
    return found ? this.getRun(runId) : null;
  }

  /**
   * Starts the run's function again from the same event (`POST /api/runs/:id/replay`), on the
   * code registered now: a new run, linked to this one. Null when there is no such run; an
   * `InputError` when its function is no longer registered.
   */
  replayRun(runId: string): Promise<RunView | null> {
    return replayRun(this.operator(), runId);
  }

  /**
   * A new run from the same event that keeps this run's steps before `fromStep`, and with
   * `output` that step's too (`POST /api/runs/:id/rerun`). Null when there is no such run; an
   * `InputError` for a body that names no step of the run, or a function no longer registered.
   */
  rerunRun(runId: string, body: unknown): Promise<RunView | null> {
    return rerunRun(this.operator(), runId, body);
  }

  /** Cancels one page of the live runs the list's filters select (`POST /api/runs/cancel?…`); the caller follows `next`. */
  cancelRuns(params: Record<string, string[]>): Promise<BulkCancelResult> {
    return cancelRuns(this.operator(), params);
  }

  /** Replays one page of the runs the list's filters select (`POST /api/runs/replay?…`); the caller follows `next`. */
  replayRuns(params: Record<string, string[]>): Promise<BulkReplayResult> {
    return replayRuns(this.operator(), params);
  }

  /** New runs' first invocations go straight to this process's free lanes (see `UnitOptions.adopt`). */
  private adoption(): UnitOptions["adopt"] {
    return { owner: this.runner.owner, leaseMs: this.runner.leaseMs, max: this.lanes.freeSlots() };
  }

  /** What the operator's actions (`run-actions.ts`) work with. */
  private operator(): Operator {
    return { ctx: this.ctx, inUnit: (fn) => this.inUnit(fn, { adopt: this.adoption() }), view: (runId) => this.getRun(runId) };
  }
}

