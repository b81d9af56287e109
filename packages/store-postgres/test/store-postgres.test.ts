import { describe } from "vitest";
import { createTestDatabase, postgresAvailable } from "../../../test/support/postgres.ts";
import { testStore } from "./store-contract.ts";

describe.runIf(postgresAvailable)("real PostgreSQL through the Neon driver", () => {
  testStore("Postgres store on PostgreSQL 127.0.0.1:5432 via @neondatabase/serverless", async () => {
    const db = await createTestDatabase("store");
    const store = db.store();
    return { store, cleanup: () => db.drop() };
  });
});
