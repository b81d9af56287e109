/** The function registry's cache: every lane of a burst finds it stale at once, and one reload serves them. */
import { createPgliteClient, PostgresStore } from "@stepwise/store-postgres";
import { expect, it } from "vitest";
import { Registry } from "../src/registry.ts";

it("reloads once for every caller that finds the cache stale at the same time", async () => {
  const store = new PostgresStore(createPgliteClient());
  await store.migrate();
  let reloads = 0;
  const counted = new Proxy(store, {
    get(target, name, receiver) {
      if (name === "listApps") reloads++;
      const value = Reflect.get(target, name, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const registry = new Registry(counted, 0);
  await Promise.all(Array.from({ length: 50 }, () => registry.ensureFresh()));
  expect(reloads).toBe(1);
  // Stale again once that reload is done: the next caller reloads.
  await registry.ensureFresh();
  expect(reloads).toBe(2);
  await store.close();
});
