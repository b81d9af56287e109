/**
 * The executor's view of storage: a system of record with atomic units of work, and a queue.
 * `@stepwise/store-postgres` implements both on Postgres; a Redis queue comes later behind the
 * same {@link Queue} interface. One contract suite (`store-contract`) checks every adapter.
 */
import type {
  AppRecord,
  EventRecord,
  FunctionRecord,
  JobRecord,
  MatcherRecord,
  NewJob,
  RunRecord,
  StepRecord,
} from "./records.ts";

/** Reads that need no transaction. */
export interface StoreReader {
  getRun(runId: string): Promise<RunRecord | null>;
  listSteps(runId: string): Promise<StepRecord[]>;
  getEvent(eventId: string): Promise<EventRecord | null>;
}

/** Everything done inside one transaction. All or nothing. */
export interface StoreTx extends StoreReader {
  /** Stores events; returns those that were new (an already-seen ID is skipped). */
  insertEvents(events: EventRecord[]): Promise<EventRecord[]>;
  /** Creates a run; false when a run with this ID exists already. */
  insertRun(run: RunRecord): Promise<boolean>;
  /** Locks the run for the rest of the transaction: every state change of a run takes this first. */
  lockRun(runId: string): Promise<RunRecord | null>;
  updateRun(runId: string, patch: Partial<Pick<RunRecord, "status" | "attempt" | "output" | "error" | "endedAt">>): Promise<void>;
  /** Inserts the step, or replaces the row with the same run and step ID. */
  saveStep(step: StepRecord): Promise<void>;
  insertMatchers(matchers: MatcherRecord[]): Promise<void>;
  findMatchers(eventName: string): Promise<MatcherRecord[]>;
  deleteMatcher(runId: string, stepId: string): Promise<void>;
  deleteMatchers(runId: string): Promise<void>;
  /**
   * Queues jobs atomically with the rest of the transaction. With `owner`, the jobs are
   * returned already leased to that worker, so it can go on without a round trip to the queue.
   */
  enqueue(jobs: NewJob[], lease?: { owner: string; leaseMs: number }): Promise<JobRecord[]>;
  /** Deletes the job if `owner` still holds its lease; false means the lease was lost. */
  completeJob(jobId: string, owner: string): Promise<boolean>;
}

/** The record of queued jobs, as a queue that is not the record itself rebuilds from it. */
export interface JobSource {
  /** Extends leases held in the record (continuations) by `owner`. */
  extendRecordLeases(jobIds: string[], owner: string, leaseMs: number): Promise<void>;
  /** Jobs with an ID after `afterId` (in ID order) created before `createdBefore`. */
  listJobs(afterId: string | null, limit: number, createdBefore: Date): Promise<JobRecord[]>;
  jobExists(jobId: string): Promise<boolean>;
}

/**
 * The queue operations outside a state change. Jobs are always written to the record inside
 * the transaction that makes them necessary (`StoreTx.enqueue`); a queue that lives elsewhere
 * (Redis) learns of them after the commit (`publish`) and forgets them after the commit that
 * completes them (`forget`). Whatever it loses in between, `reconcile` rebuilds from the record.
 */
export interface Queue {
  /**
   * True when the queue is the record itself (Postgres): a claimed job surely still exists.
   * False (Redis): a claim may name a job whose completion committed but was not yet forgotten.
   */
  readonly authoritative: boolean;
  /** After a commit: make these jobs claimable, or leased to `lease.owner` when given. */
  publish(jobs: JobRecord[], lease?: { owner: string; leaseMs: number }): Promise<void>;
  /** After the commit that deleted a job from the record. */
  forget(jobId: string): Promise<void>;
  /** Re-adds jobs the queue lost; returns how many. A no-op for the record's own queue. */
  reconcile(source: JobSource): Promise<number>;
  /** Leases up to `limit` due jobs (including ones whose lease expired) to `owner`. */
  claim(owner: string, limit: number, leaseMs: number): Promise<JobRecord[]>;
  /** Extends leases still held by `owner` (heartbeat). */
  extendLeases(jobIds: string[], owner: string, leaseMs: number): Promise<void>;
  /** Gives a job back, due at `runAt` (shutdown, or a transient failure). */
  release(jobId: string, owner: string, runAt: Date): Promise<void>;
  /** When the earliest job not leased is due, or null when the queue is empty. */
  nextDueAt(): Promise<Date | null>;
  /** Drops every lease: only for a single embedded executor starting after a crash. */
  releaseAllLeases(): Promise<void>;
}

/** A run as its worker last committed it: the basis of an optimistic change. */
export interface RunSnapshot {
  run: RunRecord;
  steps: StepRecord[];
  event: EventRecord;
}

export interface Store extends StoreReader, JobSource {
  /**
   * Runs `fn` against `snapshot` instead of a transaction and applies what it wrote at once,
   * only if the run and the job it completes are still as the snapshot says. Null when that
   * did not hold, or `fn` needed more than the snapshot: run `fn` in a transaction then.
   * Optional: a store without it always uses transactions.
   */
  /** The run, its steps and its event in one read (null when there is no such run). */
  loadRunSnapshot(runId: string): Promise<RunSnapshot | null>;
  applyOptimistically?<T>(snapshot: RunSnapshot, fn: (tx: StoreTx) => Promise<T>): Promise<{ result: T } | null>;
  /** Creates the schema if needed (idempotent). */
  migrate(): Promise<void>;
  /** Runs `fn` atomically; retried on deadlocks and serialization failures, so keep it pure. */
  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T>;
  syncApp(app: AppRecord, functions: FunctionRecord[]): Promise<void>;
  listApps(): Promise<AppRecord[]>;
  listFunctions(): Promise<FunctionRecord[]>;
  listRunsByEvent(eventId: string): Promise<RunRecord[]>;
  /**
   * Live runs with no job and nothing that will settle them (an engine bug or a lost write):
   * queues an invocation for each, once across executors; returns their IDs.
   */
  sweepStrandedRuns(): Promise<string[]>;
  queue: Queue;
  close(): Promise<void>;
}
