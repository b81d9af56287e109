import { createPgliteClient, PostgresStore } from "@stepwise/store-postgres";
import { expect, it } from "vitest";
import { testQueue, testStore } from "./store-contract.ts";

const open = async () => {
  const store = new PostgresStore(createPgliteClient());
  return { store, cleanup: () => store.close() };
};
testStore("Postgres store on PGlite", open);
testQueue("Postgres queue on PGlite", open);

it("the Postgres queue also refuses a completion by a worker that does not hold the lease", async () => {
  const { store, cleanup } = await open();
  await store.migrate();
  const [job] = await store.transaction((tx) => tx.enqueue([{ kind: "invoke", runId: "r" }]));
  await store.queue.claim("holder", 1, 10_000);
  expect(await store.transaction((tx) => tx.completeJob(job!.id, "intruder"))).toBe(false);
  expect(await store.transaction((tx) => tx.completeJob(job!.id, "holder"))).toBe(true);
  await cleanup();
});
