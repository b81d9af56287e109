/**
 * Writes checkpoints as a group commit: checkpoints of different runs that arrive while
 * statements are in flight go together as one (one round trip and one commit for all, each
 * with its own fence and outcome). Alone, a checkpoint goes at once, so a chain of steps
 * waits for nothing.
 *
 * The first try never waits for a lock: a statement that locks many runs must not wait for one
 * of them while holding the others, or a transaction that locks the same runs in another order
 * (an event cancelling runs B then A) deadlocks with it, and one run held by a long
 * transaction stalls every checkpoint gathered with it. A checkpoint whose run or job was held
 * is written again alone, waiting its turn like any transaction that locks one run.
 */
import { isRefusedValue, type CheckpointResult, type CheckpointWrite } from "@stepwise/engine";
import { writeCheckpoint, writeCheckpoints, type Outcome } from "./checkpoint-sql.ts";
import { HELD, type SqlExecutor } from "./sql.ts";

/** Most checkpoints in one statement. */
const MAX_BATCH = 64;
/** Statements in flight at once: a batch gathers behind them. */
const MAX_IN_FLIGHT = 2;
/**
 * Held checkpoints written alone at once. Each waits for its lock on a connection of the
 * pool, so without a bound one transaction holding many runs (an event cancelling them) would
 * take every connection, and lease heartbeats and claims would wait behind it.
 */
const MAX_ALONE_IN_FLIGHT = 2;

interface Pending {
  write: CheckpointWrite;
  resolve(result: CheckpointResult): void;
  reject(error: unknown): void;
}

/**
 * Writes checkpoints, gathering those that arrive while statements are in flight into one.
 * A run has one checkpoint in flight at a time, gathered or alone (the next waits its turn),
 * so a run's checkpoints commit in the order they came and never find their own run locked.
 * A batch the store refuses for a value (a data exception, a program limit) is written again
 * one checkpoint at a time, so one bad value fails only its own checkpoint; any other failure
 * is every checkpoint's.
 */
export class CheckpointWriter {
  private queue: Pending[] = [];
  private inFlight = 0;
  /** Held checkpoints to write alone, and how many are being written. */
  private held: Pending[] = [];
  private aloneInFlight = 0;
  /** Runs with a checkpoint in flight (gathered, held or alone). */
  private readonly busyRuns = new Set<string>();

  constructor(
    private readonly sql: SqlExecutor,
    /** Retries a statement aborted by a deadlock or a serialization failure. */
    private readonly retrying: <T>(attempt: () => Promise<T>) => Promise<T>,
  ) {}

  write(write: CheckpointWrite): Promise<CheckpointResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ write, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.aloneInFlight < MAX_ALONE_IN_FLIGHT && this.held.length > 0) {
      this.aloneInFlight++;
      void this.writeAlone(this.held.shift()!).finally(() => {
        this.aloneInFlight--;
        this.pump();
      });
    }
    while (this.inFlight < MAX_IN_FLIGHT) {
      const batch: Pending[] = [];
      const rest: Pending[] = [];
      for (const pending of this.queue) {
        const runId = pending.write.runId;
        if (batch.length < MAX_BATCH && !this.busyRuns.has(runId)) {
          batch.push(pending);
          this.busyRuns.add(runId);
        } else rest.push(pending);
      }
      this.queue = rest;
      if (batch.length === 0) return;
      this.inFlight++;
      void this.send(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  /** Settles a checkpoint, freeing its run for the next. */
  private done(pending: Pending, outcome: { result: CheckpointResult } | { error: unknown }): void {
    this.busyRuns.delete(pending.write.runId);
    if ("result" in outcome) pending.resolve(outcome.result);
    else pending.reject(outcome.error);
  }

  private async send(batch: Pending[]): Promise<void> {
    try {
      const results = await this.retrying(() =>
        batch.length === 1 ? writeCheckpoint(this.sql, batch[0]!.write, "skip").then((r): Outcome[] => [r]) : writeCheckpoints(this.sql, batch.map((p) => p.write)),
      );
      batch.forEach((pending, index) => {
        const result = results[index]!;
        // Held by another transaction: written alone, outside the slots, so its wait stalls no batch.
        if (result === HELD) this.held.push(pending);
        else this.done(pending, { result });
      });
    } catch (error) {
      if (batch.length === 1 || !isRefusedValue(error)) return batch.forEach((pending) => this.done(pending, { error }));
      this.held.push(...batch);
    }
  }

  private async writeAlone(pending: Pending): Promise<void> {
    try {
      const result = await this.retrying(() => writeCheckpoint(this.sql, pending.write, "wait"));
      // Waiting for the lock, it cannot be skipped; only the skipping statement answers HELD.
      if (result === HELD) throw new Error("checkpoint skipped a lock it was told to wait for");
      this.done(pending, { result });
    } catch (error) {
      this.done(pending, { error });
    }
  }
}
