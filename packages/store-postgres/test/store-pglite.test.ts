import { createPgliteClient, PostgresStore } from "@stepwise/store-postgres";
import { freshPglite } from "../../../test/support/pglite.ts";
import { testQueue, testStore } from "./store-contract.ts";

// The store contract starts from an empty database, as `stepwise dev` does the first time: it
// migrates it (twice). The queue contract starts from the suites' copy of a migrated one.
testStore("Postgres store on PGlite", async () => {
  const store = new PostgresStore(createPgliteClient());
  return { store, cleanup: () => store.close() };
});
testQueue("Postgres queue on PGlite", async () => {
  const store = new PostgresStore(await freshPglite());
  return { store, cleanup: () => store.close() };
});
