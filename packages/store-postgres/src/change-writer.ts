/**
 * Writes the optimistic changes (a job's end: a timer's wake-up, an invocation's answer) as a
 * group commit: changes to distinct runs asked for in the same turn of the event loop go as one
 * statement, one round trip and one commit for all, each under its own guards. Timers that come
 * due together fire in one turn, and answers that arrive together are read in one: twenty
 * sleeps ending in the same millisecond were twenty statements queueing for ten connections,
 * the last committed 10-20 ms after the first. A change alone in its turn goes as the single
 * statement, as it always did.
 *
 * The gathered statement never waits for a run's lock or its fence job's (see
 * `checkpoint-writer.ts` for why a statement holding many runs must not); a change whose run or
 * job another transaction held is written again alone, waiting its turn as any one-run write
 * does, and a statement that failed is written again one change at a time. So each change ends
 * as the single statement would have ended it: written, refused by a guard (null), or failed.
 * (What it may still wait for are rows of the runs it holds: their other jobs, steps and waits,
 * which a transaction takes only after their run, bar one that drops another run's wait; a
 * deadlock there is broken by Postgres, and each change is then written alone.)
 */
import type { WriteResult } from "@stepwise/engine";
import { writeChange, writeChanges, type ChangeWrite } from "./change-sql.ts";
import { HELD, type SqlExecutor } from "./sql.ts";

/**
 * Most changes in one statement; more in that turn go as several, side by side. One statement is
 * one Postgres backend on one core, and every invocation after it waits for its last change:
 * W3's twenty wake-ups in one statement were 38-40 ms late (p50), in statements of eight 30-33.
 */
const MAX_BATCH = 8;

/**
 * Runs `fn` once this turn of the event loop is over: its timers and the I/O read in it have
 * all asked for their changes. A runtime without `setImmediate` (a Worker, which has no Node
 * compatibility) runs it after the pending microtasks instead, and so gathers less.
 */
const afterThisTurn: (fn: () => void) => void =
  typeof (globalThis as { setImmediate?: unknown }).setImmediate === "function" ? (fn) => void setImmediate(fn) : (fn) => queueMicrotask(fn);

interface Pending {
  write: ChangeWrite;
  resolve(result: WriteResult | null): void;
  reject(error: unknown): void;
}

export class ChangeWriter {
  /** Changes asked for in this turn of the event loop, written at its end. */
  private gathered: Pending[] = [];

  constructor(private readonly sql: SqlExecutor) {}

  /** Writes `write` with the changes asked for in the same turn; resolves its result, or null when a guard failed. */
  write(write: ChangeWrite): Promise<WriteResult | null> {
    return new Promise((resolve, reject) => {
      if (this.gathered.length === 0) afterThisTurn(() => this.flush());
      this.gathered.push({ write, resolve, reject });
    });
  }

  private flush(): void {
    const gathered = this.gathered;
    this.gathered = [];
    // One change per run in a statement: a second one of the same run goes alone, and meets the
    // run as the first left it (the version it expected is gone: null, as two lanes racing get).
    const runs = new Set<string>();
    const batch: Pending[] = [];
    for (const pending of gathered) {
      if (runs.has(pending.write.runId)) void this.writeAlone(pending);
      else (runs.add(pending.write.runId), batch.push(pending));
    }
    for (let start = 0; start < batch.length; start += MAX_BATCH) {
      const part = batch.slice(start, start + MAX_BATCH);
      if (part.length === 1) void this.writeAlone(part[0]!);
      else void this.writeTogether(part);
    }
  }

  private async writeTogether(batch: Pending[]): Promise<void> {
    let results: Array<WriteResult | null | typeof HELD>;
    try {
      results = await writeChanges(this.sql, batch.map((pending) => pending.write));
    } catch {
      // Whatever failed the statement (a value the store refuses, a conflict, a change that
      // cannot be encoded, the store out of reach) fails each change only as it fails alone.
      for (const pending of batch) void this.writeAlone(pending);
      return;
    }
    batch.forEach((pending, index) => {
      const result = results[index]!;
      if (result === HELD) void this.writeAlone(pending);
      else pending.resolve(result);
    });
  }

  private async writeAlone({ write, resolve, reject }: Pending): Promise<void> {
    try {
      resolve(await writeChange(this.sql, write.runId, write.version, write.change, write.fence));
    } catch (error) {
      reject(error);
    }
  }
}
