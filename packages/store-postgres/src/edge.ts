/**
 * `@stepwise/store-postgres/edge`: the store for Workers and other edge runtimes. The same
 * PostgresStore and Neon driver as the main entry, without what only Node can load: PGlite
 * (WebAssembly plus a file system), `pg` (TCP sockets) and `ws` (the runtime's own WebSocket
 * is used). A Worker bundle importing this pulls none of them.
 */
export { PostgresStore, type PostgresStoreOptions } from "./store.ts";
export { PgQueue } from "./queue.ts";
export type { SqlClient, SqlExecutor } from "./sql.ts";
export { SCHEMA_SQL } from "./schema.ts";
export { createNeonClient, TransactionAbortedError, type NeonClientOptions, type NeonHttpOptions } from "./drivers/neon.ts";
