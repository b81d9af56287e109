/**
 * A fresh PostgreSQL database for the suite that calls this, made before its tests (with the
 * store's schema) and dropped after them: what the store's real-PostgreSQL suites each set up.
 * (Apart from `postgres.ts`, which the simulation also runs outside the test runner.)
 */
import { PostgresStore, type SqlClient } from "@stepwise/store-postgres";
import { afterAll, beforeAll } from "vitest";
import { createTestDatabase, type TestDatabase } from "./postgres.ts";

export interface SuiteDatabase {
  /** The database itself: `client()` opens another connection pool (for a transaction a test holds). */
  readonly db: TestDatabase;
  /** A store on it, migrated. */
  readonly store: PostgresStore;
  /** A client of the store's own pool, for SQL a test runs itself. */
  readonly sql: SqlClient;
}

export function suiteDatabase(label: string): SuiteDatabase {
  let made: SuiteDatabase | undefined;
  beforeAll(async () => {
    const db = await createTestDatabase(label);
    const sql = db.client();
    const store = new PostgresStore(sql);
    await store.migrate();
    made = { db, store, sql };
  });
  afterAll(async () => made?.db.drop());
  const get = (): SuiteDatabase => {
    if (!made) throw new Error(`the database of "${label}" is made before the suite's tests: use it inside them`);
    return made;
  };
  return {
    get db() {
      return get().db;
    },
    get store() {
      return get().store;
    },
    get sql() {
      return get().sql;
    },
  };
}
