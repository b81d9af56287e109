/**
 * SqlClient over node-postgres (`pg`): the Postgres wire protocol over plain TCP, for Node
 * deployments on a vanilla PostgreSQL (no WebSocket proxy, no Neon). Not for Workers.
 *
 * It shares types, errors and the transaction routine with `./neon.ts` (`./node-postgres.ts`),
 * so the store sees the same behaviour whichever of the two runs.
 */
import { Pool, types, type CustomTypesConfig } from "pg";
import type { QueryOptions, SqlClient, SqlExecutor } from "../sql.ts";
import { pinnedTypes, pooledTransaction, safeErrorHandler } from "./node-postgres.ts";

/** Options for {@link createPgClient}. */
export interface PgClientOptions {
  /** `postgres://user:password@host:port/db` (`?sslmode=require` etc. work as in `pg`). */
  connectionString: string;
  /** Maximum pooled connections (default 10). */
  max?: number;
  /**
   * How long a pooled connection may sit idle before it is closed, in ms (default 10,000, the
   * pool's; 0 keeps idle connections open). Each new connection plans the executor's statements
   * afresh for their first runs.
   */
  idleTimeoutMs?: number;
  /** Receives errors of idle or broken connections (default: console.error). Never throws. */
  onError?: (err: Error) => void;
}

const TYPES = pinnedTypes<CustomTypesConfig>(types);

/** Creates a pooled SqlClient; connections open lazily on first use. */
export function createPgClient(options: PgClientOptions): SqlClient {
  const safeOnError = safeErrorHandler(options.onError);

  const pool = new Pool({ connectionString: options.connectionString, max: options.max ?? 10, idleTimeoutMillis: options.idleTimeoutMs, types: TYPES });
  // Idle connections can die (server restart, network): pg-pool emits 'error', and an
  // unhandled 'error' event would crash the process. The pool drops the client by itself.
  pool.on("error", (err: Error) => safeOnError(err));
  let ended = false;

  return {
    async query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[], options?: QueryOptions) {
      const values = params ? [...params] : undefined;
      const res = options?.prepare ? await pool.query({ name: options.prepare, text, values }) : await pool.query(text, values);
      return res.rows as Row[];
    },

    async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
      return pooledTransaction(await pool.connect(), safeOnError, fn);
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
