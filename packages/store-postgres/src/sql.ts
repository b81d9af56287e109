/**
 * The one thing the Postgres store needs from a driver: run parameterized statements, alone
 * or inside a transaction. PGlite (embedded), the Neon driver (WebSocket `Pool`) and any
 * future driver implement this, so the store's SQL is written once.
 */
export interface SqlExecutor {
  /** Runs one statement with `$1…` parameters; returns its rows. */
  query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<Row[]>;
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
