/**
 * Run states this process already holds, so a job it will run needs no read of its run: the
 * state a commit left behind, kept for the job that commit queued. For a continuation (the
 * run's next invocation, leased to this worker) that is always kept; for a timer (a sleep's
 * wake-up, a timeout) and for the first invocation of a run this process just started (one a
 * burst of events left queued for want of a free lane) it is kept when the job is due soon and
 * the state is small, since such a job may be run by another executor and its entry then waits
 * to be evicted. A state kept here may be stale (an event, a cancel, another executor moved the
 * run on): every commit made from it is guarded by the run's version and falls back to a
 * transaction on the run as it is. An invocation is given a kept state only on its job's first
 * claim: a job claimed before may have had steps checkpointed under it since, which the state lacks.
 */
import { jsonBytes } from "../limits.ts";
import { TIMER_KINDS, type JobRecord, type RunState } from "../records.ts";
import type { Checkpointed } from "./checkpoints.ts";

/** Jobs due further out are read when they run. */
const TIMER_HORIZON_MS = 5 * 60_000;
/** Runs holding more than this in results are read when their timer fires. */
const MAX_TIMER_STATE_BYTES = 256 * 1024;
/** At most this many such states are kept, holding at most this many bytes (results and events); the oldest go first. */
const MAX_TIMER_STATES = 2_000;
const MAX_TIMER_BYTES = 32 * 1024 * 1024;


export class KnownStates {
  private readonly continuations = new Map<string, RunState>();
  private readonly timers = new Map<string, RunState>();
  private timerBytes = 0;

  /** The continuation `jobId` starts from `state`. */
  continuation(jobId: string, state: RunState): void {
    this.continuations.set(jobId, state);
  }

  /**
   * A commit left the run at `state` and queued `jobs`: keep it for the timers among them that
   * are due soon, and for the first invocation of a run that has not begun (nothing but a cancel,
   * which deletes the job, can change such a run before that invocation; a batch's run, which
   * later events join without touching the run, is never kept).
   */
  queued(jobs: readonly JobRecord[], state: RunState | undefined, now: number): void {
    if (!state || state.run.stateBytes > MAX_TIMER_STATE_BYTES) return;
    for (const job of jobs) {
      if (job.runId !== state.run.id || job.runAt.getTime() - now > TIMER_HORIZON_MS) continue;
      if (!TIMER_KINDS.has(job.kind) && !isFirstInvocation(job, state)) continue;
      this.dropTimer(job.id);
      this.timers.set(job.id, state);
      this.timerBytes += weight(state);
      while (this.timers.size > MAX_TIMER_STATES || this.timerBytes > MAX_TIMER_BYTES) this.dropTimer(this.timers.keys().next().value!);
    }
  }

  /**
   * The state kept for `job`, if any and if it can serve: it is handed out once. An invocation
   * claimed before (its holder stalled or died) may have had steps checkpointed since: built
   * from the kept state, its request would have the app run them again.
   */
  take(job: JobRecord): RunState | undefined {
    const state = this.continuations.get(job.id) ?? this.timers.get(job.id);
    this.forget(job.id);
    return job.kind === "invoke" && job.claims > 1 ? undefined : state;
  }

  forget(jobId: string): void {
    this.continuations.delete(jobId);
    this.dropTimer(jobId);
  }

  private dropTimer(jobId: string): void {
    const state = this.timers.get(jobId);
    if (!state) return;
    this.timers.delete(jobId);
    this.timerBytes -= weight(state);
  }
}

function isFirstInvocation(job: JobRecord, state: RunState): boolean {
  return job.kind === "invoke" && job.stepId === undefined && state.run.status === "queued" && state.steps.length === 0 && state.events === undefined;
}

const eventBytes = new WeakMap<object, number>();

/** Roughly what a kept state holds: its results, its events' data, and a little for the rest. */
function weight(state: RunState): number {
  let events = 0;
  for (const event of state.events ?? [state.event]) {
    let bytes = eventBytes.get(event);
    if (bytes === undefined) eventBytes.set(event, (bytes = jsonBytes(event.data ?? null)));
    events += bytes;
  }
  return state.run.stateBytes + events + 1_024 * (1 + state.steps.length);
}

/**
 * The snapshot an invocation in flight in this process will apply its answer to, moved on by
 * each checkpoint this process commits for it: so the answer is applied as one guarded
 * statement, as without checkpoints. A checkpoint taken by another executor leaves the snapshot
 * behind, and the version guard sends the answer through a transaction on the run as it is.
 */
export class InvocationSnapshots {
  private readonly byJob = new Map<string, RunState>();
  private readonly lastEnds = new Map<string, number | null>();

  /** The invocation of `jobId` starts from `state`; returns the snapshot to apply its answer to. */
  open(jobId: string, state: RunState): RunState {
    const snapshot: RunState = { run: { ...state.run }, steps: [...state.steps], event: state.event, ...(state.events && { events: state.events }) };
    this.byJob.set(jobId, snapshot);
    return snapshot;
  }

  close(jobId: string): void {
    this.byJob.delete(jobId);
    this.lastEnds.delete(jobId);
  }

  /**
   * When the latest step of the invocation's snapshot ended (undefined: none, or no snapshot
   * here): worked out once when it opens and moved by each checkpoint, so a step costs the same
   * however many came before it.
   */
  lastEnd(jobId: string): number | undefined {
    const snapshot = this.byJob.get(jobId);
    if (!snapshot) return undefined;
    let known = this.lastEnds.get(jobId);
    if (known === undefined) {
      known = null;
      for (const step of snapshot.steps) if (step.endedAt && (known === null || step.endedAt.getTime() > known)) known = step.endedAt.getTime();
      this.lastEnds.set(jobId, known);
    }
    return known ?? undefined;
  }

  /** A checkpoint of the invocation was committed at `version`, just after the snapshot's. */
  advance(checkpointed: Checkpointed): void {
    const snapshot = this.byJob.get(checkpointed.jobId);
    if (!snapshot || snapshot.run.version !== checkpointed.version - 1) return void this.close(checkpointed.jobId);
    snapshot.steps.push(checkpointed.step);
    const ended = checkpointed.step.endedAt?.getTime();
    if (ended !== undefined && this.lastEnds.has(checkpointed.jobId)) this.lastEnds.set(checkpointed.jobId, Math.max(ended, this.lastEnds.get(checkpointed.jobId) ?? ended));
    Object.assign(snapshot.run, {
      version: checkpointed.version,
      stateBytes: snapshot.run.stateBytes + checkpointed.bytes,
      status: snapshot.run.status === "queued" ? "running" : snapshot.run.status,
    });
  }
}
