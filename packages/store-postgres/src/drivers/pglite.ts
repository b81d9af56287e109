/**
 * SqlClient over PGlite: real Postgres compiled to WebAssembly, embedded in the process. The
 * `stepwise dev` default, so no database server is needed.
 *
 * PGlite is ONE connection. Its own mutex already serializes `query`, `exec` and `transaction`
 * (a transaction holds the lock from BEGIN to COMMIT), so statements from many async tasks never
 * interleave inside someone else's transaction; we rely on that instead of adding a second lock.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { PGlite, type Transaction } from "@electric-sql/pglite";
import type { SqlClient, SqlExecutor } from "../sql.ts";

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
}

// Marks "this async call chain is inside a transaction callback". PGlite's lock is not
// re-entrant, so a `client.query()` there would wait for the transaction that awaits it:
// a silent deadlock. We turn that mistake into an immediate error.
const insideTx = new AsyncLocalStorage<{ open: boolean }>();

function assertNotInsideTx(method: string): void {
  if (insideTx.getStore()?.open) {
    throw new Error(
      `SqlClient.${method}() called inside transaction(): use the tx executor (PGlite is one ` +
        "connection, so this would deadlock)",
    );
  }
}

/**
 * Opens (or creates) a PGlite database. Returns at once; PGlite finishes starting in the
 * background and every call waits for it, so a broken `dataDir` surfaces on the first call.
 * Returned JS types match the Neon driver's (see `./index.ts`).
 */
export function createPgliteClient(options: PgliteClientOptions = {}): SqlClient {
  const db = new PGlite({ dataDir: options.dataDir, parsers: PARSERS });

  const txExecutor = (tx: Transaction): SqlExecutor => ({
    async query<Row>(text: string, params?: readonly unknown[]) {
      const res = await tx.query<Row>(text, params ? [...params] : undefined);
      return res.rows;
    },
  });

  return {
    async query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]) {
      assertNotInsideTx("query");
      const res = await db.query<Row>(text, params ? [...params] : undefined);
      return res.rows;
    },

    async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
      assertNotInsideTx("transaction");
      // PGlite's transaction(): BEGIN, fn, COMMIT, or ROLLBACK and rethrow when fn throws.
      // It also throws when COMMIT finds the transaction aborted (an error fn swallowed).
      return db.transaction(async (tx) => {
        const marker = { open: true };
        try {
          return await insideTx.run(marker, () => fn(txExecutor(tx)));
        } finally {
          // Work fn started without awaiting may outlive it; once the transaction is over its
          // client calls are legal again (they just wait for the lock).
          marker.open = false;
        }
      });
    },

    async exec(script: string) {
      assertNotInsideTx("exec");
      await db.exec(script);
    },

    async close() {
      if (!db.closed) await db.close();
    },
  };
}
