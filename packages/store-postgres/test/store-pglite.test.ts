import { createPgliteClient, PostgresStore } from "@stepwise/store-postgres";
import { testStore } from "./store-contract.ts";

testStore("Postgres store on PGlite", async () => {
  const store = new PostgresStore(createPgliteClient());
  return { store, cleanup: () => store.close() };
});
