import { createPgliteClient, PostgresStore } from "@stepwise/store-postgres";
import { testQueue, testStore } from "./store-contract.ts";

const open = async () => {
  const store = new PostgresStore(createPgliteClient());
  return { store, cleanup: () => store.close() };
};
testStore("Postgres store on PGlite", open);
testQueue("Postgres queue on PGlite", open);
