/**
 * A run being changed: a working copy of its state and the {@link RunChange} that takes the
 * stored state there. Transitions (`answer.ts`, `timers.ts`, `waits.ts`, `ending.ts`) only
 * read and write a draft: no I/O, no clock but `env.now`, so each can be tested alone. What a
 * transition needs from other runs (events to send, a child to start, a parent to settle) it
 * emits as {@link Effect}s, which the unit of work (`unit/unit.ts`) carries out in the same
 * transaction; several transitions may touch one draft there, each seeing the ones before.
 */
import type { BackoffConfig, SerializedError, SignalConflict } from "@stepwise/protocol";
import { jsonBytes, type Limits } from "../limits.ts";
import { isTerminal } from "../records.ts";
import type { Signal } from "../signals.ts";
import type { EventRecord, FunctionRecord, MatcherRecord, NewJob, RunPause, RunRecord, RunState, StepRecord } from "../records.ts";
import { changeOnlyAdds, type JobSelector, type RunChange, type RunPatch } from "../store.ts";

/** What transitions may know besides the run: the time, its function and the executor's settings. */
export interface MachineEnv {
  /** The executor's clock, for timestamps only: due times are judged by the store. */
  now: number;
  /** The run's function, or undefined when it is no longer registered. */
  fn: FunctionRecord | undefined;
  limits: Limits;
  /** The run's retry backoff: the executor's defaults with the function's own on top. */
  backoff: Required<BackoffConfig>;
  /** A registered function by global ID (for `step.invoke`). */
  findFunction(id: string): FunctionRecord | undefined;
  /** Apps with keys of their own: `step.invoke` does not cross into or out of them. */
  isolatedApps: ReadonlySet<string>;
  /** The requests of the answer's `step.fetch` ops, sealed (`fetch-steps.ts`), by step ID. */
  sealedRequests?: ReadonlyMap<string, string>;
}

/** How a run ended; the parent of an invoked run learns it too. */
export type RunEnding =
  | { status: "completed"; output: unknown }
  | { status: "failed"; error: SerializedError; step?: string }
  | { status: "cancelled"; reason: string }
  | { status: "skipped"; reason: string };

/** Work on other runs that a transition asks for, done by the unit of work in the same transaction. */
export type Effect =
  /** Store events (sent by a step, or the failure event of a run) with all their consequences. */
  | { type: "send"; events: EventRecord[] }
  /** Start `fn` as a child run for the parent's invoke step. */
  | { type: "start-child"; fn: FunctionRecord; event: EventRecord; parent: { runId: string; stepId: string } }
  /** A child run ended: settle the parent's invoke step. */
  | { type: "settle-parent"; parentRunId: string; stepId: string; childRunId: string; ending: RunEnding }
  /** A `step.createCallback`: mint its URL and complete the step with it. */
  | { type: "mint-callback"; runId: string; stepId: string; expiresAt: Date };

export interface LogLine {
  level: "info" | "warn" | "error";
  line: string;
}

export class RunDraft {
  readonly run: RunRecord;
  readonly event: EventRecord;
  /** A batched run's events (see `RunState.events`); events joining it in this unit are added. */
  private events: EventRecord[] | undefined;
  readonly change: RunChange = { run: {}, steps: [], jobs: [], dropJobs: [], openMatchers: [], closeMatchers: [] };
  readonly effects: Effect[] = [];
  readonly lines: LogLine[] = [];
  /** What this change does that metrics and traces count (see `signals.ts`). */
  readonly signals: Signal[] = [];
  /** Waits opened by this change: the unit looks back for events that arrived while the app answered. */
  readonly openedWaits: MatcherRecord[] = [];
  /** The look-back a wait opened here asked for (`lookbackMs` of its op), by step ID. */
  readonly lookbacks = new Map<string, number>();
  /** What a signal wait opened here does if another run waits for its signal (`onConflict`), by step ID. */
  readonly signalConflicts = new Map<string, SignalConflict>();
  /** The callback step a callback wait opened here waits on, by the wait's step ID. */
  readonly callbackSteps = new Map<string, string>();
  /** A step changed: the run's status and next invocation must be worked out again (`settle`). */
  dirty = false;
  private readonly stepsById: Map<string, StepRecord>;
  /** The steps in order, until one is saved: transitions read them several times per change. */
  private ordered: StepRecord[] | undefined;

  constructor(state: RunState) {
    this.run = { ...state.run };
    this.event = state.event;
    if (state.events) this.events = [...state.events];
    this.stepsById = new Map(state.steps.map((step) => [step.id, step]));
  }

  /** The state as it will be once the change is written (the next invocation's snapshot). */
  state(version: number): RunState {
    return { run: { ...this.run, version }, steps: this.steps(), event: this.event, ...(this.events && { events: [...this.events] }) };
  }

  /** The events the run got: its batch's, else its trigger. */
  runEvents(): readonly EventRecord[] {
    return this.events ?? [this.event];
  }

  /** This run opened a batch: its events are a list from now on, which later events may join. */
  openedBatch(): void {
    this.events ??= [this.event];
  }

  /** An event joined this run's batch (the store holds it already): the snapshot carries it too. */
  joinedBatch(event: EventRecord): void {
    this.events = [...(this.events ?? [this.event]), event];
  }

  /** The steps in order of position (a fresh array: callers may keep it). */
  steps(): StepRecord[] {
    this.ordered ??= [...this.stepsById.values()].sort((a, b) => a.position - b.position);
    return [...this.ordered];
  }

  step(id: string): StepRecord | undefined {
    return this.stepsById.get(id);
  }

  get isEmpty(): boolean {
    const c = this.change;
    return changeOnlyAdds(c) && c.jobs.length === 0 && c.openMatchers.length === 0;
  }

  /** Whether the change reaches beyond this run's own rows (so it needs a transaction). */
  get needsUnit(): boolean {
    return this.effects.length > 0 || this.openedWaits.length > 0;
  }

  saveStep(step: StepRecord): void {
    const before = this.stepsById.get(step.id);
    if ((step.status === "completed" || step.status === "failed") && step.endedAt && before?.status !== step.status) {
      this.signals.push({
        type: "step-ended",
        functionId: this.run.functionId,
        runId: this.run.id,
        stepId: step.id,
        kind: step.kind,
        status: step.status,
        attempts: step.attempts,
        startedAt: step.startedAt,
        endedAt: step.endedAt,
        ...(!before && { gapMs: this.gapBefore(step) }),
      });
    }
    this.stepsById.set(step.id, step);
    this.ordered = undefined;
    const index = this.change.steps.findIndex((s) => s.id === step.id);
    if (index >= 0) this.change.steps[index] = step;
    else this.change.steps.push(step);
    this.dirty = true;
  }

  /**
   * Steps a new run starts with (a rerun keeps the replayed run's steps before the one it runs
   * again from): written with the run, their outputs counted in its state. Nothing to settle:
   * the run's first invocation is queued already, and replays past them.
   */
  restoreSteps(steps: StepRecord[]): void {
    let bytes = 0;
    for (const step of steps) {
      if (step.outputBytes !== undefined) throw new Error(`step "${step.id}" was read without its output: it cannot be copied`);
      this.stepsById.set(step.id, step);
      this.change.steps.push(step);
      // Counted as a run counts them when they happen (machine/steps.ts): a step.run's output, any step's error.
      if (step.status === "completed" && step.kind === "run") bytes += jsonBytes(step.output ?? null);
      if (step.error) bytes += jsonBytes(step.error);
    }
    this.ordered = undefined;
    this.run.stateBytes += bytes;
  }

  /**
   * Paused: its jobs go, and none is written until it is resumed. An invocation already out
   * loses its lease, so its checkpoints and answer are refused as after a cancel, and a step
   * whose result was not yet committed runs again on resume.
   */
  pause(pause: RunPause): void {
    this.dropJobs("all");
    this.patchRun({ paused: pause });
  }

  /** Held at its creation: its function was paused (the store saw it so); it has no job. */
  heldAtStart(at: Date): void {
    this.run.paused = { at, by: "function" };
    this.change.jobs = [];
  }

  /** This new run was started by an operator from `runId`'s event (a replay; a rerun from `fromStep`). */
  startedFrom(runId: string, fromStep?: string): void {
    this.run.replayOf = runId;
    if (fromStep !== undefined) this.run.rerunFrom = fromStep;
  }

  /** How long after the latest end of the run's other steps `step` started (undefined: it is the first). */
  private gapBefore(step: StepRecord): number | undefined {
    let latest: number | undefined;
    for (const other of this.stepsById.values()) if (other.endedAt && (latest === undefined || other.endedAt.getTime() > latest)) latest = other.endedAt.getTime();
    return latest === undefined ? undefined : Math.max(0, step.startedAt.getTime() - latest);
  }

  patchRun(patch: RunPatch): void {
    if (patch.status && isTerminal(patch.status) && !isTerminal(this.run.status)) {
      const endedAt = patch.endedAt ?? new Date();
      const { traceparent } = this.run;
      this.signals.push({ type: "run-ended", functionId: this.run.functionId, runId: this.run.id, status: patch.status, startedAt: this.run.startedAt, endedAt, ...(traceparent && { traceparent }) });
    }
    Object.assign(this.run, patch);
    Object.assign(this.change.run, patch);
  }

  enqueue(job: Omit<NewJob, "runId" | "concurrency">): void {
    // A paused run has no job: what it needs is worked out from its state when it is resumed.
    if (this.run.paused) return;
    const { concurrency } = this.run;
    // An invocation takes a slot of each of the run's limits (see `concurrency.ts`).
    this.change.jobs.push(job.kind === "invoke" && concurrency ? { ...job, runId: this.run.id, concurrency } : { ...job, runId: this.run.id });
  }

  /**
   * Writes the run's next invocation, if this change queues one due at once, already leased to
   * `lease.owner`: that worker runs it next without a trip through the queue (a continuation).
   * With `holdsSlot` false (the worker ran a timer, or none of the run's jobs) a run with a
   * concurrency limit has no slot to hand on: its invocation waits for a claim.
   */
  leaseNext(lease: { owner: string; leaseMs: number }, holdsSlot: boolean): boolean {
    if (this.run.concurrency && !holdsSlot) return false;
    // Due at once (a priority's queue position in the past counts as at once).
    const next = this.change.jobs.find((job) => job.kind === "invoke" && !job.runAt && !((job.delayMs ?? 0) > 0));
    if (next) next.lease = { owner: lease.owner, leaseMs: lease.leaseMs };
    return next !== undefined;
  }

  /**
   * A new run's first invocation is due `delayMs` later (on the store's clock, added to any
   * shift already made): a throttle's wait, or a priority (negative: queued as if earlier).
   */
  delayStart(delayMs: number): void {
    for (const job of this.change.jobs) if (job.kind === "invoke" && !job.stepId) job.delayMs = (job.delayMs ?? 0) + delayMs;
  }

  /**
   * The run's first invocation is due now, whenever it was due before (a batch that filled up):
   * the queued job is moved, or, for a run already in the record, replaced.
   */
  startNow(): void {
    const queued = this.change.jobs.find((job) => job.kind === "invoke" && !job.stepId);
    if (queued) {
      delete queued.delayMs;
      delete queued.runAt;
      return;
    }
    this.dropJobs({ kind: "invoke" });
    this.enqueue({ kind: "invoke" });
  }

  /** Whether this change already queues an invocation of the whole function. */
  get invokeQueued(): boolean {
    return this.change.jobs.some((job) => job.kind === "invoke" && job.stepId === undefined);
  }

  /** Deletes the run's jobs that `selector` names (or all of them), queued before or in this change. */
  dropJobs(selector: JobSelector | "all"): void {
    const c = this.change;
    if (selector === "all") {
      c.jobs = [];
      c.dropJobs = "all";
      return;
    }
    c.jobs = c.jobs.filter((job) => !(job.kind === selector.kind && job.stepId === selector.stepId));
    if (c.dropJobs !== "all") c.dropJobs.push(selector);
  }

  /**
   * Opens a matcher; a wait's with `lookbackMs` also matches events stored that long before, a
   * signal wait's `onConflict` is applied by the unit once it knows who else waits, and a
   * callback wait's `callbackStep` names where a POST that came first is stored.
   */
  openMatcher(matcher: MatcherRecord, options: { lookbackMs?: number; onConflict?: SignalConflict; callbackStep?: string } = {}): void {
    this.change.openMatchers.push(matcher);
    if (matcher.kind !== "wait") return;
    this.openedWaits.push(matcher);
    if (options.lookbackMs !== undefined) this.lookbacks.set(matcher.stepId, options.lookbackMs);
    if (options.onConflict !== undefined) this.signalConflicts.set(matcher.stepId, options.onConflict);
    if (options.callbackStep !== undefined) this.callbackSteps.set(matcher.stepId, options.callbackStep);
  }

  /** Open matchers of this change not yet written (so events in the same unit can meet them). */
  pendingMatchers(): MatcherRecord[] {
    return this.change.openMatchers;
  }

  /** Whether the matcher for `stepId` was closed in this change. */
  closedMatcher(stepId: string): boolean {
    const closed = this.change.closeMatchers;
    return closed === "all" || closed.includes(stepId);
  }

  closeMatcher(stepId: string): void {
    const c = this.change;
    const pending = c.openMatchers.findIndex((m) => m.stepId === stepId);
    if (pending >= 0) {
      // Opened and closed in one change: it never needs to reach the store.
      c.openMatchers.splice(pending, 1);
      const opened = this.openedWaits.findIndex((m) => m.stepId === stepId);
      if (opened >= 0) this.openedWaits.splice(opened, 1);
      return;
    }
    if (c.closeMatchers !== "all" && !c.closeMatchers.includes(stepId)) c.closeMatchers.push(stepId);
  }

  closeAllMatchers(): void {
    this.change.openMatchers = [];
    this.openedWaits.length = 0;
    this.change.closeMatchers = "all";
  }

  emit(effect: Effect): void {
    this.effects.push(effect);
  }

  /** Effects emitted since the last call, for the unit to carry out. */
  takeEffects(): Effect[] {
    return this.effects.splice(0);
  }

  info(line: string): void {
    this.lines.push({ level: "info", line });
  }

  warn(line: string): void {
    this.lines.push({ level: "warn", line });
  }
}
