/**
 * A bulk cancel lists a page of runs, then cancels each under its lock: a run that changed in
 * between so that the filter no longer selects it (its status, or `q` over it) is passed over,
 * with the reason, and left as it is. The store is the real one; the test acts between the
 * listing and the locks, where a concurrent request would.
 */
import type { BulkCancelResult, Store } from "@stepwise/engine";
import { Stepwise } from "@stepwise/sdk";
import { expect, it } from "vitest";
import { z } from "zod";
import { startStack } from "../support/stack.ts";

const client = new Stepwise({ id: "bulk-recheck", dev: true, schemas: { "nap/start": z.object({ n: z.number() }) } });
const napper = client.createFunction({ id: "napper", triggers: [{ event: "nap/start" }] }, async ({ step }) => {
  await step.sleep("long", "1h");
});

/** The store, with `between` run once after the next list of runs is read. */
function actingAfterList(store: Store, state: { between?: () => Promise<void> }): Store {
  return new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (name !== "listRuns") return typeof value === "function" ? value.bind(target) : value;
      return async (...args: Parameters<Store["listRuns"]>) => {
        const page = await target.listRuns(...args);
        const act = state.between;
        state.between = undefined;
        await act?.();
        return page;
      };
    },
  });
}

it("passes over a run that q no longer selects once it is locked, and cancels the rest", async () => {
  const state: { between?: () => Promise<void> } = {};
  const stack = await startStack({ store: "pglite", client, functions: [napper], wrapStore: (store) => actingAfterList(store, state) });
  const post = async <T>(path: string) => {
    const response = await fetch(`${stack.executor.url}${path}`, { method: "POST" });
    return { status: response.status, body: (await response.json()) as T };
  };
  try {
    const ids = await stack.send([1, 2].map((n) => ({ name: "nap/start", data: { n } })));
    const [a, b] = await Promise.all(ids.map((id) => stack.waitForRun(id, { status: "sleeping" })));
    // Both are listed unpaused; b is paused before the cancel takes its lock.
    state.between = async () => expect((await post(`/api/runs/${b!.id}/pause`)).status).toBe(200);
    const { status, body } = await post<BulkCancelResult>(`/api/runs/cancel?function=${a!.functionId}&q=${encodeURIComponent("!has(run.paused)")}`);
    expect(status).toBe(200);
    expect(state.between).toBeUndefined();
    expect(body).toMatchObject({ matched: 2, cancelled: 1, passed: [{ runId: b!.id, reason: "it no longer matches q" }] });
    expect(await stack.getRun(a!.id)).toMatchObject({ status: "cancelled" });
    expect(await stack.getRun(b!.id)).toMatchObject({ status: "sleeping", paused: { by: expect.any(String) } });
  } finally {
    await stack.close();
  }
});
