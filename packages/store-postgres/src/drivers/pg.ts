/**
 * SqlClient over node-postgres (`pg`): the Postgres wire protocol over plain TCP, for Node
 * deployments on a vanilla PostgreSQL (no WebSocket proxy, no Neon). Not for Workers.
 *
 * It mirrors `./neon.ts` line for line where behaviour matters (the Neon driver IS node-postgres
 * underneath), so the store sees the same JS types, the same errors and the same transaction
 * semantics whichever of the two runs.
 */
import { Pool, types, type CustomTypesConfig } from "pg";
import type { SqlClient, SqlExecutor } from "../sql.ts";
// Shared with the Neon driver so `instanceof TransactionAbortedError` holds for both.
import { TransactionAbortedError } from "./neon.ts";

/** Options for {@link createPgClient}. */
export interface PgClientOptions {
  /** `postgres://user:password@host:port/db` (`?sslmode=require` etc. work as in `pg`). */
  connectionString: string;
  /** Maximum pooled connections (default 10). */
  max?: number;
  /** Receives errors of idle or broken connections (default: console.error). Never throws. */
  onError?: (err: Error) => void;
}

// The same pins as the Neon driver (see `./neon.ts` for why each): set per Pool through
// `types`, never with the process-wide `types.setTypeParser`, so other code changing the
// global parsers cannot change what the store sees and we change nothing for others.
const INT8 = 20;
const DATE = 1082;
const JSON_OID = 114;
const JSONB = 3802;
const TIMESTAMPTZ = 1184;
const builtinTimestamptz = types.getTypeParser(TIMESTAMPTZ, "text");
const PINNED: Record<number, (v: string) => unknown> = {
  [INT8]: (v) => v,
  [DATE]: (v) => v,
  [JSON_OID]: (v) => JSON.parse(v),
  [JSONB]: (v) => JSON.parse(v),
  [TIMESTAMPTZ]: builtinTimestamptz,
};
const TYPES: CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    PINNED[oid] ?? types.getTypeParser(oid, format)) as CustomTypesConfig["getTypeParser"],
};

/** Creates a pooled SqlClient; connections open lazily on first use. */
export function createPgClient(options: PgClientOptions): SqlClient {
  const onError = options.onError ?? ((err: Error) => console.error("[stepwise] postgres:", err));
  const safeOnError = (err: Error) => {
    try {
      onError(err);
    } catch {
      // A throwing logger must not turn a handled connection error into a crash.
    }
  };

  const pool = new Pool({ connectionString: options.connectionString, max: options.max ?? 10, types: TYPES });
  // Idle connections can die (server restart, network): pg-pool emits 'error', and an
  // unhandled 'error' event would crash the process. The pool drops the client by itself.
  pool.on("error", (err: Error) => safeOnError(err));
  let ended = false;

  return {
    async query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]) {
      const res = await pool.query(text, params ? [...params] : undefined);
      return res.rows as Row[];
    },

    async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      // A checked-out client has no pool listener: without ours, a dropped socket mid-
      // transaction would be an unhandled 'error' event. Remember it to discard the client.
      let broken: Error | undefined;
      const onClientError = (err: Error) => {
        broken = err;
        safeOnError(err);
      };
      client.on("error", onClientError);
      let closed = false;
      const tx: SqlExecutor = {
        async query<Row>(text: string, params?: readonly unknown[]) {
          // After release the connection belongs to someone else: never run stray statements.
          if (closed) throw new Error("Transaction is closed");
          const res = await client.query(text, params ? [...params] : undefined);
          return res.rows as Row[];
        },
      };
      try {
        await client.query("BEGIN");
        const result = await fn(tx);
        closed = true;
        // Postgres answers COMMIT of an aborted transaction with a ROLLBACK tag, not an error;
        // PGlite throws there, and so do we, so a swallowed failure never looks committed.
        const commit = await client.query("COMMIT");
        if (commit.command === "ROLLBACK") throw new TransactionAbortedError();
        return result;
      } catch (err) {
        closed = true;
        if (!broken) {
          try {
            await client.query("ROLLBACK");
          } catch (rollbackErr) {
            // The connection is unusable (its state unknown): destroy it, don't pool it.
            broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
          }
        }
        throw err;
      } finally {
        client.off("error", onClientError);
        client.release(broken);
      }
    },

    async exec(script: string) {
      // No parameters → simple query protocol: several `;`-separated statements, run as one
      // implicit transaction.
      await pool.query(script);
    },

    async close() {
      // pg's Pool has `ended` at runtime but not in @types/pg; track it ourselves so a second
      // close() is a no-op (pool.end() twice rejects).
      if (ended) return;
      ended = true;
      await pool.end();
    },
  };
}
