/**
 * What the two node-postgres-based drivers share (the Neon driver IS node-postgres over a
 * WebSocket; `pg` is it over TCP): the pinned type parsers, a logger that cannot throw, and
 * one transaction routine, so both give the store the same JS types, errors and semantics.
 * Pure: no runtime imports, so the edge entry can carry it.
 */
import type { QueryOptions, SqlExecutor } from "../sql.ts";

/** Thrown when COMMIT finds the transaction aborted (fn swallowed a failed statement). */
export class TransactionAbortedError extends Error {
  /** SQLSTATE in_failed_sql_transaction, so callers can match on `code` like other errors. */
  readonly code = "25P02";
  constructor() {
    super("Transaction was aborted by an earlier error; COMMIT rolled it back");
    this.name = "TransactionAbortedError";
  }
}

type Parser = (value: string) => unknown;
type TypeParsers = { getTypeParser(oid: number, format?: "text" | "binary"): unknown };

/**
 * Type parsers for one Pool: pg-types' defaults already give jsonb → parsed value, timestamptz →
 * Date, int4 → number, int8 → string; we pin those the store depends on per Pool (never with the
 * process-wide `setTypeParser`), so code elsewhere changing the global parsers cannot change
 * what the store sees. `date` stays a string: pg-types makes it local midnight, PGlite UTC.
 */
export function pinnedTypes<T>(types: TypeParsers): T {
  const INT8 = 20;
  const DATE = 1082;
  const JSON_OID = 114;
  const JSONB = 3802;
  const TIMESTAMPTZ = 1184;
  const pinned: Record<number, Parser> = {
    [INT8]: (v) => v,
    [DATE]: (v) => v,
    [JSON_OID]: (v) => JSON.parse(v),
    [JSONB]: (v) => JSON.parse(v),
    [TIMESTAMPTZ]: types.getTypeParser(TIMESTAMPTZ, "text") as Parser,
  };
  return { getTypeParser: (oid: number, format?: "text" | "binary") => pinned[oid] ?? types.getTypeParser(oid, format) } as T;
}

/** Wraps a connection-error callback so a throwing logger cannot crash the process. */
export function safeErrorHandler(onError?: (err: Error) => void): (err: Error) => void {
  const report = onError ?? ((err: Error) => console.error("[stepwise] postgres:", err));
  return (err) => {
    try {
      report(err);
    } catch {
      // A throwing logger must not turn a handled connection error into a crash.
    }
  };
}

/** The parts of a node-postgres pooled client a transaction uses. */
interface PooledClient {
  query(text: string, params?: unknown[]): Promise<{ rows: unknown[]; command: string }>;
  query(config: { name: string; text: string; values?: unknown[] }): Promise<{ rows: unknown[]; command: string }>;
  on(event: "error", listener: (err: Error) => void): unknown;
  off(event: "error", listener: (err: Error) => void): unknown;
  release(err?: Error | boolean): void;
}

/** BEGIN, `fn`, COMMIT (or ROLLBACK and rethrow) on a client checked out of a pool. */
export async function pooledTransaction<T>(
  client: PooledClient,
  onError: (err: Error) => void,
  fn: (tx: SqlExecutor) => Promise<T>,
): Promise<T> {
  // A checked-out client has no pool listener: without ours, a dropped socket mid-
  // transaction would be an unhandled 'error' event. Remember it to discard the client.
  let broken: Error | undefined;
  const onClientError = (err: Error) => {
    broken = err;
    onError(err);
  };
  client.on("error", onClientError);
  let closed = false;
  const tx: SqlExecutor = {
    async query<Row>(text: string, params?: readonly unknown[], options?: QueryOptions) {
      // After release the connection belongs to someone else: never run stray statements.
      if (closed) throw new Error("Transaction is closed");
      const values = params ? [...params] : undefined;
      const res = options?.prepare ? await client.query({ name: options.prepare, text, values }) : await client.query(text, values);
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
}
