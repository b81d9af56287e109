/**
 * The one thing the Postgres store needs from a driver: run parameterized statements, alone
 * or inside a transaction. PGlite (embedded), the Neon driver (WebSocket `Pool`) and any
 * future driver implement this, so the store's SQL is written once.
 */
export interface SqlExecutor {
  /** Runs one statement with `$1…` parameters; returns its rows. */
  query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[], options?: QueryOptions): Promise<Row[]>;
}

export interface QueryOptions {
  /**
   * A name for a statement on the hot path: drivers with connections of their own (pg, the Neon
   * driver's Pool) keep it prepared on each connection, so Postgres plans it once per connection
   * rather than at every call (a third of a checkpoint's time went to planning). One name, one text.
   */
  prepare?: string;
}

export interface SqlClient extends SqlExecutor {
  /**
   * Runs `fn` in one transaction (BEGIN … COMMIT, ROLLBACK when it throws). Statements inside
   * go through the `tx` executor, never through the client, so they share the transaction.
   */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Runs several statements separated by `;` without parameters (schema setup). */
  exec(script: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * SQL for parameter `param`, a JSON array of IDs (the drivers disagree on how to send JS arrays),
 * as a Postgres array of `type`: filter with `id = ANY (…)`. The planner takes a JSON document
 * joined as rows for 100 rows whatever it holds, and with a few thousand to some tens of
 * thousands of rows in the table it chose to read the whole table; `= ANY` of an array reaches
 * the rows through the key at every size (`test/plans-by-key.test.ts`).
 */
export function idsParam(param: `$${number}`, type: "text" | "bigint"): string {
  return `(SELECT array_agg(value::${type}) FROM jsonb_array_elements_text(${param}::jsonb))::${type}[]`;
}

/**
 * What a statement that skips rows other transactions hold answers for a write whose run or job
 * was held: nothing of it was written, and it goes again alone, waiting its turn.
 */
export const HELD: unique symbol = Symbol("held");
