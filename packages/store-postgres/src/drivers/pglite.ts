/**
 * SqlClient over PGlite: real Postgres compiled to WebAssembly, embedded in the process. The
 * `stepwise dev` default, so no database server is needed.
 *
 * PGlite is ONE connection. Its own mutex already serializes `query`, `exec` and `transaction`
 * (a transaction holds the lock from BEGIN to COMMIT), so statements from many async tasks never
 * interleave inside someone else's transaction; we rely on that instead of adding a second lock.
 *
 * Statements named with `prepare` are kept prepared in that one session, as the other drivers
 * keep them on each connection (see `pglite-prepared.ts`).
 */
import { PGlite, type Transaction } from "@electric-sql/pglite";
import type { QueryOptions, SqlClient, SqlExecutor } from "../sql.ts";
import { PreparedStatements } from "./pglite-prepared.ts";

// PGlite's defaults already give jsonb → parsed value, timestamptz → Date, int4 → number.
// Pin what differs from the Neon driver (pg-types): int8 comes back as BigInt here but as a
// string there, and date as UTC midnight here but local midnight there. Both become strings,
// which also covers int8[] since PGlite parses array elements with these parsers.
const INT8 = 20;
const DATE = 1082;
const PARSERS = { [INT8]: (v: string) => v, [DATE]: (v: string) => v };

/** Options for {@link createPgliteClient}. */
export interface PgliteClientOptions {
  /** Folder holding the database; undefined = in memory (gone when closed). */
  dataDir?: string;
  /** How long a call may wait for a transaction to release the connection (default 10 s). */
  deadlockAfterMs?: number;
  /**
   * A database to start from instead of an empty one: a tarball made by PGlite's
   * `dumpDataDir("none")`. Starting from one skips `initdb`, about three quarters of PGlite's
   * start (the test suites start their stores from one made once).
   */
  loadDataDir?: Blob;
}

/** A {@link SqlClient} over PGlite, which can also copy its whole database. */
export interface PgliteClient extends SqlClient {
  /** The database as a tarball that `loadDataDir` starts from. */
  dumpDataDir(): Promise<Blob>;
}

/**
 * PGlite's lock is not re-entrant: a `client.query()` awaited inside a transaction callback
 * waits for the transaction that awaits it, a silent deadlock. Tracking the async call chain
 * (AsyncLocalStorage) would catch that at once but slows every promise in the process, so
 * instead a call that waits for the connection longer than `deadlockAfterMs` while a
 * transaction holds it is failed with an error that names the likely cause.
 */
function deadlockError(method: string, waitedMs: number): Error {
  return new Error(
    `SqlClient.${method}() waited ${waitedMs} ms for the PGlite connection held by a transaction: if it was ` +
      "called inside transaction(), that is a deadlock (PGlite is one connection); use the tx executor",
  );
}

/**
 * Opens (or creates) a PGlite database. Returns at once; PGlite finishes starting in the
 * background and every call waits for it, so a broken `dataDir` surfaces on the first call.
 * Returned JS types match the Neon driver's (see `./index.ts`).
 */
export function createPgliteClient(options: PgliteClientOptions = {}): PgliteClient {
  const db = new PGlite({ dataDir: options.dataDir, loadDataDir: options.loadDataDir, parsers: PARSERS });
  const prepared = new PreparedStatements(db);
  const deadlockAfterMs = options.deadlockAfterMs ?? 10_000;
  let openTransactions = 0;

  /** Runs `call`; while a transaction is open, fails it if it waits too long for the lock. */
  function guarded<T>(method: string, call: () => Promise<T>): Promise<T> {
    if (openTransactions === 0) return call();
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(deadlockError(method, deadlockAfterMs)), deadlockAfterMs);
      call().then(
        (value) => (clearTimeout(timer), resolve(value)),
        (error: unknown) => (clearTimeout(timer), reject(error)),
      );
    });
  }

  const txExecutor = (tx: Transaction): SqlExecutor => ({
    async query<Row>(text: string, params?: readonly unknown[], options?: QueryOptions) {
      if (options?.prepare) {
        // As PGlite refuses an unnamed one: a named statement would otherwise run in whatever transaction is open now.
        if (tx.closed) throw new Error("Transaction is closed");
        return prepared.run<Row>(options.prepare, text, params ?? [], { inTransaction: true });
      }
      const res = await tx.query<Row>(text, params ? [...params] : undefined);
      return res.rows;
    },
  });

  return {
    async query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[], options?: QueryOptions) {
      if (options?.prepare) return guarded("query", () => prepared.run<Row>(options.prepare!, text, params ?? [], { inTransaction: false }));
      const res = await guarded("query", () => db.query<Row>(text, params ? [...params] : undefined));
      return res.rows;
    },

    async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
      // PGlite's transaction(): BEGIN, fn, COMMIT, or ROLLBACK and rethrow when fn throws.
      // It also throws when COMMIT finds the transaction aborted (an error fn swallowed).
      return guarded("transaction", () =>
        db.transaction(async (tx) => {
          openTransactions++;
          try {
            return await fn(txExecutor(tx));
          } finally {
            openTransactions--;
          }
        }),
      );
    },

    async exec(script: string) {
      await guarded("exec", () => db.exec(script));
    },

    async close() {
      if (!db.closed) await db.close();
    },

    dumpDataDir() {
      return db.dumpDataDir("none");
    },
  };
}
