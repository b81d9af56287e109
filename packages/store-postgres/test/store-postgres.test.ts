import { describe } from "vitest";
import { createTestDatabase, postgresAvailable } from "../../../test/support/postgres.ts";
import { testQueue, testStore } from "./store-contract.ts";

describe.runIf(postgresAvailable)("real PostgreSQL through the Neon driver", () => {
  const open = async () => {
    const db = await createTestDatabase("store");
    return { store: db.store(), cleanup: () => db.drop() };
  };
  testStore("Postgres store on PostgreSQL 127.0.0.1:5432 via @neondatabase/serverless", open);
  testQueue("Postgres queue on PostgreSQL 127.0.0.1:5432", open);
});
