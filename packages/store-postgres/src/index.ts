export { PostgresStore, type PostgresStoreOptions } from "./store.ts";
export { PgQueue } from "./queue.ts";
export type { SqlClient, SqlExecutor } from "./sql.ts";
export { SCHEMA_SQL } from "./schema.ts";
export * from "./drivers/index.ts";
