/**
 * The function registry's cache: every lane of a burst finds it stale at once, and one reload
 * serves them; a cache just past its age serves on while that reload runs.
 */
import { PostgresStore } from "@stepwise/store-postgres";
import { expect, it } from "vitest";
import { freshPglite } from "../../../test/support/pglite.ts";
import { Registry } from "../src/registry.ts";

it("reloads once for every caller that finds the cache stale at the same time", async () => {
  const store = new PostgresStore(await freshPglite());
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

it("serves a cache just past its age while the reload runs, and waits for one twice its age", async () => {
  const store = new PostgresStore(await freshPglite());
  let reloads = 0;
  // While `held` is set, a reload waits for it: a store slow to answer.
  let held: Promise<void> | undefined;
  const slow = new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (name !== "listApps") return typeof value === "function" ? value.bind(target) : value;
      return async () => {
        reloads++;
        await held;
        return target.listApps();
      };
    },
  });
  const refreshMs = 500;
  const registry = new Registry(slow, refreshMs);
  await registry.ensureFresh();
  expect(reloads).toBe(1);
  const outcome = (promise: Promise<void>) => Promise.race([promise.then(() => "served"), sleep(refreshMs / 2).then(() => "waited")]);

  let release!: () => void;
  held = new Promise((resolve) => (release = resolve));
  await sleep(refreshMs * 1.2);
  expect(await outcome(registry.ensureFresh())).toBe("served");
  expect(reloads).toBe(2);
  release();
  await sleep(50);

  held = new Promise((resolve) => (release = resolve));
  await sleep(refreshMs * 2.2);
  const waiting = registry.ensureFresh();
  expect(await outcome(waiting)).toBe("waited");
  release();
  await waiting;
  expect(reloads).toBe(3);
  await store.close();
});

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
