/**
 * The executor's view of storage: a system of record whose changes are whole {@link RunChange}s,
 * and a {@link Queue} of jobs leased from that record. `@stepwise/store-postgres` implements
 * both on Postgres, optionally with a {@link ReadyQueue} in Redis as the index of what is due.
 * One contract suite (`store-contract`) checks every adapter.
 */
import type { CheckpointRefusal, MAX_KEPT_MESSAGES } from "@stepwise/protocol";
import type {
  AppRecord,
  EventQuery,
  EventRecord,
  FunctionRecord,
  JobKind,
  JobRecord,
  MatcherRecord,
  NewJob,
  RunListPosition,
  RunQuery,
  RunRecord,
  RunState,
  StepRecord,
  StoredEvent,
  CronTick,
} from "./records.ts";

export type RunPatch = Partial<Pick<RunRecord, "status" | "attempt" | "output" | "error" | "endedAt" | "stateBytes" | "paused">>;

/** Jobs of one run to delete: by kind, and step when given. */
export interface JobSelector {
  kind: JobKind;
  stepId?: string;
}

/**
 * Everything one transition writes for one run, applied atomically by the store's single
 * write encoder (the same for the optimistic path and inside a transaction).
 */
export interface RunChange {
  run: RunPatch;
  /** Steps written whole (inserted or replacing the stored step with the same ID). */
  steps: StepRecord[];
  jobs: NewJob[];
  dropJobs: JobSelector[] | "all";
  openMatchers: MatcherRecord[];
  /** Step IDs of matchers to close, or all of the run's. */
  closeMatchers: string[] | "all";
}

/** A published message as stored: `data` is its JSON text. */
export interface StoredRunMessage {
  seq: number;
  topic: string;
  data: string;
  publishedAt: Date;
}

/** What a refused connection made of its deployment: still counting, gone now, or no longer live there. */
export type RefusalCount = "counting" | "gone" | "not live";

/** Proof that a worker still holds a job: the commit that completes it checks the owner. */
export interface Fence {
  jobId: string;
  owner: string;
  /**
   * The job was never claimed by this worker: a timer it fires itself. The commit takes the job
   * only if nobody holds it and it is due on the store's clock, so it runs once however many
   * executors reach for it.
   */
  unclaimed?: boolean;
}

/** A checkpoint: one `step.run` result committed while the invocation that ran it goes on. */
export interface CheckpointWrite {
  runId: string;
  /** The function the signing app says the run is of; a run of another function is refused. */
  functionId: string;
  /** The invocation's lease: its job, the holder, and which claim of the job it is. */
  lease: { jobId: string; owner: string; claims: number };
  /** The lease is extended to at least this long from now. */
  leaseMs: number;
  /** The completed step (output, started and ended). */
  step: StepRecord;
  /** The output's size as JSON, added to the run's stored state. */
  bytes: number;
  maxRunStateBytes: number;
}

/**
 * A checkpoint's outcome. Refused: the lease is not this invocation's any more, the run ended,
 * the step is already stored, or the result would pass the run's state limit.
 */
export type CheckpointResult =
  | { ok: true; wasQueued: boolean; /** The run's version after the write. */ version: number }
  | { ok: false; refused: CheckpointRefusal };

/** What a written change produced. */
export interface WriteResult {
  /** The run's version after the write. */
  version: number;
  /** Jobs written claimable (the queue learns of them after the commit). */
  queued: JobRecord[];
  /** The job written leased to its worker, if the change asked for one. */
  continued?: JobRecord;
  /** A new run written paused, its jobs left out: its function was paused (see `RunRecord.paused`). */
  held?: boolean;
  /** IDs of the jobs the write deleted (the fence's job among them). */
  deleted: string[];
}

/** A run to create, with the jobs and matchers its first change adds (none when `change` is absent). */
export interface NewRunWrite {
  run: RunRecord;
  change?: RunChange;
}

/** Whether `change` only adds jobs and matchers: what a run's creation may write along with it. */
export function changeOnlyAdds(change: RunChange): boolean {
  return (
    Object.keys(change.run).length === 0 &&
    change.steps.length === 0 &&
    change.dropJobs !== "all" &&
    change.dropJobs.length === 0 &&
    change.closeMatchers !== "all" &&
    change.closeMatchers.length === 0
  );
}

/** Everything done inside one transaction. All or nothing. */
export interface StoreTx {
  /** Deletes the job if `fence.owner` still holds it (unclaimed: if nobody does and it is due); when it became due, or null when the lease was lost. */
  completeJob(fence: Fence): Promise<{ readyAt: Date } | null>;
  /** Locks the run for the rest of the transaction and reads it whole. */
  lockRun(runId: string): Promise<RunState | null>;
  /** Writes a change to a run locked in this transaction at `version`. */
  writeChange(runId: string, version: number, change: RunChange): Promise<WriteResult>;
  /**
   * Creates runs (status, attempt and version as given) in one write, each with what its
   * `change` adds (see {@link changeOnlyAdds}); the run stays at its version. Returns the result
   * of each run created, by ID: one whose ID exists is left out, and nothing of it is written.
   */
  insertRuns(runs: NewRunWrite[]): Promise<Map<string, WriteResult>>;
  /**
   * Stores events; returns those that were new (an already-seen ID is skipped). Holds a shared
   * lock on each event name until the commit, so a wait opening on that name ({@link lockWaits})
   * either sees these events or is seen by them.
   */
  insertEvents(events: EventRecord[]): Promise<EventRecord[]>;
  /** Exclusive locks on event names, taken before looking back for events a new wait may have missed. */
  lockWaits(eventNames: string[]): Promise<void>;
  /**
   * The first event of `name`, in order of arrival, received at or after `since` and before
   * `until` (store clock) that `accept` takes; all of them are looked at, however many. With
   * `dataContains`, only events whose stored data (its JSON text) contains that text are read
   * at all: a pre-filter, so it must hold for every event `accept` could take.
   */
  firstEventSince(name: string, since: Date, until: Date | undefined, accept: (event: EventRecord) => boolean, dataContains?: string): Promise<EventRecord | null>;
  /**
   * Open matchers on `eventName` whose timeout has not passed (store clock), in run and step
   * order; with `matchValue`, only those whose frozen value is equal to it (a signal's name):
   * an indexed lookup for the executor's own event names (`stepwise/…`), no others.
   */
  findMatchers(eventName: string, matchValue?: string): Promise<MatcherRecord[]>;
  /** Closes another run's matcher without its lock (a signal wait taken over; see `claimSignals`). */
  dropMatcher(runId: string, stepId: string): Promise<void>;
  /** A run's row as it stands, without locking it (what never changes of it, such as its function). */
  getRun(runId: string): Promise<RunRecord | null>;
  /** The store's clock (ms since the epoch): what due times and wait timeouts are judged by. */
  now(): Promise<number>;
  getEvent(eventId: string): Promise<EventRecord | null>;
  /**
   * Takes `key` of `functionId` for `runId` for `ttlMs` (store clock), unless another run holds
   * it unexpired. Returns the run that holds it: `runId` when taken.
   */
  reserveIdempotencyKey(functionId: string, key: string, runId: string, ttlMs: number): Promise<string>;
  /**
   * Takes one start from the rate limit of `functionId` and `key` (GCRA on the store's clock: a
   * start every `intervalMs`, with bursts up to `toleranceMs` ahead); false when none is left.
   */
  takeRateLimit(functionId: string, key: string, intervalMs: number, toleranceMs: number): Promise<boolean>;
  /**
   * Takes the next start of the throttle of `functionId` and `key` (GCRA on the store's clock: a
   * start every `intervalMs`, with bursts up to `toleranceMs` ahead); returns how long from now
   * (ms) that start is, 0 when at once. A start more than `maxDelayMs` away is not taken: null.
   */
  takeThrottle(functionId: string, key: string, intervalMs: number, toleranceMs: number, maxDelayMs?: number): Promise<number | null>;
  /**
   * Takes `key` of `functionId` for `runId` unless a live run holds it (with `force`, whatever
   * holds it). Returns the live run that held it (the one `force` took it from), or null.
   * `pendingHere` answers for runs this transaction started or ended (see {@link PendingHere}).
   */
  takeSingleton(functionId: string, key: string, runId: string, force: boolean, pendingHere: PendingHere): Promise<string | null>;
  /**
   * Makes `runId` the run the debounce of `functionId` and `key` starts. The run that held it is
   * replaced if it has not been handed to a worker yet: `pendingHere` answers for runs this
   * transaction started or ended; for the others the record does, under a lock on the run and
   * then on its first invocation (waiting for a claim that holds it), kept until the commit so no
   * claim takes it meanwhile. Returns the run replaced (null when a new burst opened) and how long
   * ago (ms, store clock) the burst's first event arrived.
   */
  takeDebounce(functionId: string, key: string, runId: string, pendingHere: PendingHere): Promise<{ replaces: string | null; openedMsAgo: number }>;
  /**
   * Puts an event in the open batch of its function and key, or opens one for `place.runId`
   * (whose first event it is then). The open batch is joined only while its run has not been
   * handed to a worker (decided as in {@link takeDebounce}) and while its bytes stay within
   * `maxBytes` (else it closes, and a new one opens).
   */
  placeInBatch(place: BatchPlacement, pendingHere: PendingHere): Promise<BatchPlace>;
  /** Gives a run started in this transaction the events of a batch, in order (a replayed batch's run). */
  insertRunEvents(runId: string, eventIds: readonly string[]): Promise<void>;
  /** Queues a cron trigger's tick, unless one of that pattern is queued already (then null). */
  queueCronTick(tick: CronTick): Promise<JobRecord | null>;
}

/**
 * What a transaction knows of a run that holds a singleton key, a debounce or a batch, before
 * the record can tell: true for one it started and has not ended (not in the record yet), false
 * for one it ended, undefined for the rest (the record decides).
 */
export type PendingHere = (runId: string) => boolean | undefined;

/** An event for a batch: see {@link StoreTx.placeInBatch}. */
export interface BatchPlacement {
  functionId: string;
  key: string;
  /** The run that starts a new batch, if one opens. */
  runId: string;
  eventId: string;
  bytes: number;
  maxSize: number;
  maxBytes: number;
}

/** Where an event went in its function's batches. */
export interface BatchPlace {
  /** The run of the batch it is in: `runId` of the placement when it opened one. */
  runId: string;
  /** How many events that batch holds now, this one included. */
  size: number;
  /** The batch is closed, and its run should start now: it holds `maxSize` events. */
  full: boolean;
  /** An open batch closed to make room (this event's bytes would have passed the cap): its run should start now. */
  closed?: string;
}

/**
 * The queue as the worker lanes use it. Every job lives in the record; a lease is held in the
 * record too (`locked_by`), so the commit that completes a job proves its worker still holds
 * it, whichever queue handed the job out.
 */
export interface Queue {
  /**
   * Leases up to `limit` due jobs (including ones whose lease ran out) to `owner`. An invocation
   * with concurrency limits only while each of its keys has a slot free: counted across every
   * executor, exactly.
   */
  claim(owner: string, limit: number, leaseMs: number): Promise<JobRecord[]>;
  /** Extends leases still held by `owner` (the heartbeat). */
  extendLeases(jobIds: string[], owner: string, leaseMs: number): Promise<void>;
  /**
   * Gives a job back, due again after `delayMs` on the store's clock: at shutdown, in an
   * outage, or after a failure in the executor (`failure`, counted on the job).
   */
  release(job: JobRecord, owner: string, options: { delayMs: number; failure?: string }): Promise<void>;
  /**
   * After a commit: tell a queue outside the record what was queued and deleted. What it may
   * tell later (deletions) it tells in the background; `settled` waits for that.
   */
  afterCommit(changes: { queued: JobRecord[]; deleted: string[] }): Promise<void>;
  /** Resolves once what `afterCommit` left to tell in the background has been told (a stop or a drain waits for it). */
  settled?(): Promise<void>;
  /**
   * An invocation holding concurrency slots of `keys` ended without a continuation: invocations
   * waiting for those keys may be claimed now (see `concurrency.ts`). Resolves to how many of
   * the keys a claim may find something to grant for now: 0 when nothing waits on them.
   */
  slotsFreed(keys: string[]): Promise<number>;
  /** Milliseconds until the earliest job not leased is due (0 if one is due), or null when none is queued. */
  nextDueIn(): Promise<number | null>;
  /** Re-adds jobs a queue outside the record lost; returns how many. */
  reconcile(): Promise<number>;
  /** Drops every lease: only for a single embedded executor starting after a crash. */
  releaseAllLeases(): Promise<void>;
}

/**
 * An index of due jobs kept outside the record (Redis): fast, shared claims and due times.
 * It may lose anything; the record rebuilds it (`reconcile`).
 */
export interface ReadyQueue {
  publish(jobs: JobRecord[]): Promise<void>;
  forget(jobIds: string[]): Promise<void>;
  /** IDs of up to `limit` due jobs, leased to `owner` in the index. */
  claim(owner: string, limit: number, leaseMs: number): Promise<string[]>;
  extendLeases(jobIds: string[], owner: string, leaseMs: number): Promise<void>;
  /**
   * Due again `delayMs` from now on the index's own clock (relative, so an index whose clock
   * differs from the record's does not hand the job out early, again and again). Unless another
   * owner holds it there.
   */
  release(jobId: string, owner: string, delayMs: number): Promise<void>;
  nextDueIn(): Promise<number | null>;
  /** Re-adds the jobs `list` pages through (the record's free jobs) that the index lacks. */
  reconcile(list: (afterId: string | null, limit: number) => Promise<JobRecord[]>): Promise<number>;
  releaseAllLeases(): Promise<void>;
}

export interface Store {
  readonly queue: Queue;
  /** Creates or updates the schema (idempotent). */
  migrate(): Promise<void>;
  /** Runs `fn` atomically; retried on deadlocks and serialization failures, so keep it pure. */
  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T>;
  /**
   * The run, its steps and its event in one read, without a lock (null when there is no such
   * run). With `maxOutputBytes`, a step output larger than that is not read: its step comes
   * with `outputBytes` instead (an invocation sends such an output by size alone anyway).
   */
  loadRunState(runId: string, options?: { maxOutputBytes?: number }): Promise<RunState | null>;
  /**
   * Applies `change` as one statement, outside any transaction, only if the run is still at
   * `state`'s version and `fence.owner` still holds `fence.jobId` (which it deletes). Null when
   * either moved: nothing was written, and the caller runs its transition in a transaction.
   */
  applyOptimistically(state: RunState, fence: Fence, change: RunChange): Promise<WriteResult | null>;
  /**
   * Commits one step result of an invocation still running, as one statement that reads and
   * writes only that step, the run's row and the job (so its cost does not grow with the run).
   */
  checkpoint(write: CheckpointWrite): Promise<CheckpointResult>;
  /**
   * Registers the app and its functions, in one transaction. Writes nothing and returns the
   * functions whose global ID another app already holds (`shop` + `fulfil-order` and
   * `shop-fulfil` + `order` are both `shop-fulfil-order`): an app never re-points another's.
   * `ticks` are the first ticks of the functions' cron triggers: queued where that pattern has
   * no tick queued yet (a tick already queued keeps its time), while queued ticks of patterns
   * the app's functions no longer have are deleted. A registration brings the version's
   * deployment back if it was gone, unless `revive` is false (discovery registering again an
   * app whose answer did not change: that is no sign the deployment is back); one that moves
   * the deployment to another URL always does.
   */
  syncApp(
    app: AppRecord & { deploymentUrl?: string },
    functions: FunctionRecord[],
    ticks?: CronTick[],
    options?: { revive?: boolean },
  ): Promise<{ taken: Array<{ functionId: string; appId: string }>; queued: JobRecord[]; deleted: string[] }>;
  /** Apps, each with the `deployments` of its versions. */
  listApps(): Promise<AppRecord[]>;
  /**
   * Records that the deployment of `version` of the app at `url` is gone (it answered 404 or
   * 410): its runs are invoked at the app's URL from now on, until that
   * version registers again. False when it was not live there (another executor found it gone
   * first, or the version registered again at another URL).
   */
  markDeploymentGone(appId: string, version: string, url: string): Promise<boolean>;
  /**
   * The deployment of `version` at `url` refused a connection (nothing ran there). Refusals that
   * go on for `goneAfterMs`, never more than `pauseMs` apart and with no answer between
   * (`deploymentAnswered`), mark it gone as `markDeploymentGone` does ("gone"); a longer pause
   * starts the count again (it was a restart, a blip). "not live": it was no longer live there
   * (found gone by another executor, registered again elsewhere). A registration of the same
   * URL keeps the count; one that revives a gone deployment or moves it clears it.
   */
  deploymentRefused(appId: string, version: string, url: string, goneAfterMs: number, pauseMs: number): Promise<RefusalCount>;
  /** The deployment of `version` at `url` answered: its count of refusals, if any, starts again. */
  deploymentAnswered(appId: string, version: string, url: string): Promise<void>;
  listFunctions(): Promise<FunctionRecord[]>;
  /** Pauses a function (`paused`), or resumes it, saying what becomes of the runs its pause held; the function as it now is, or null when none is registered by that ID. */
  setFunctionPaused(functionId: string, change: { paused: Date } | { resumed: "run" | "skip" }): Promise<FunctionRecord | null>;
  /** Live runs of the function held by its pause (`paused.by` "function"), oldest first. */
  listHeldRuns(functionId: string, limit: number): Promise<string[]>;
  /** Functions not paused that still hold runs (held by an ingest that raced their resume), with what their resume said to do with them. */
  findUnreleasedHolds(limit: number): Promise<Array<{ functionId: string; held: "run" | "skip" }>>;
  getRun(runId: string): Promise<RunRecord | null>;
  /** Those of `runIds` that have ended, or are gone (pruned): the executor stops their requests in flight. */
  endedRuns(runIds: readonly string[]): Promise<string[]>;
  /** The run's steps in position order; with `ids`, only those. */
  listSteps(runId: string, options?: { ids?: readonly string[] }): Promise<StepRecord[]>;
  getEvent(eventId: string): Promise<EventRecord | null>;
  /** The runs of an event: those it started, and the batch run it joined (`batchEvents`). */
  listRunsByEvent(eventId: string): Promise<RunRecord[]>;
  /**
   * Runs newest first (by start, then ID), filtered (all but `q`); `positions` says where each
   * run stands in that order, `next` where the page after this one starts, if there may be one.
   */
  listRuns(query: RunQuery): Promise<{ runs: RunRecord[]; positions: RunListPosition[]; next: RunListPosition | null }>;
  /** The events of these IDs that are stored, in no order. */
  getEvents(eventIds: readonly string[]): Promise<EventRecord[]>;
  /** Events newest first (by arrival), filtered; `next` is where the page after this one starts, if there may be one. */
  listEvents(query: EventQuery): Promise<{ events: StoredEvent[]; next: string | null }>;
  /** The runs of each event (as {@link listRunsByEvent}), for many events in one read. */
  listRunsByEvents(eventIds: readonly string[]): Promise<Array<{ eventId: string; run: RunRecord }>>;
  /** A batch's run's event IDs in order of arrival; empty for a run not started as a batch. */
  listBatchEventIds(runId: string): Promise<string[]>;
  /** The queue as the record holds it, for metrics: jobs due and not held, when the oldest of them came due, jobs held. */
  queueStats(): Promise<{ due: number; oldestDueAt: Date | null; leased: number }>;
  /** Live runs older than `minAgeMs` with no job at all and no child run to wait for: candidates for repair. */
  findStrandedRuns(minAgeMs: number, limit: number): Promise<string[]>;
  /**
   * Appends a run's published messages in order (`run_messages`): numbered on from the run's
   * last under a lock per run, so numbers are dense and commit in order; older messages past
   * the run's {@link MAX_KEPT_MESSAGES} go. Returns the number of the last. (Nothing checks that
   * the run exists: the caller did, and the row's reference to the run refuses one pruned since.)
   */
  appendRunMessages(runId: string, messages: ReadonlyArray<{ topic: string; data: string }>): Promise<number>;
  /** A run's messages numbered after `afterSeq`, oldest first, at most `limit`. */
  readRunMessages(runId: string, afterSeq: number, limit: number): Promise<StoredRunMessage[]>;
  /**
   * Deletes up to `limit` finished runs (with their steps) that ended more than `olderThanMs`
   * ago, and up to `limit` events as old that no remaining run was started by.
   */
  prune(olderThanMs: number, limit: number): Promise<{ runs: number; events: number }>;
  /**
   * Deletes up to `limit` each of the expired idempotency keys, the rate limits whose time has
   * come round and the concurrency keys nothing waits on: state that holds nothing back any
   * more, whatever the retention of runs.
   */
  pruneFlowControl(limit: number): Promise<number>;
  /**
   * Closes the store's connections, first waiting up to `settleMs` (the store's default when
   * unset) for what its queue still tells in the background.
   */
  close(options?: { settleMs?: number }): Promise<void>;
}
