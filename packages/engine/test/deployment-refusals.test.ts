/**
 * DeploymentRefusals on the real store (PGlite): what counts as an answer, how often a refusal
 * is written, and a window of 0 for those who want the first refusal to move runs.
 */
import { PostgresStore } from "@stepwise/store-postgres";
import type { InvokeResponse } from "@stepwise/protocol";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { EngineContext } from "../src/context.ts";
import { deploymentOf, DeploymentRefusals } from "../src/deployments.ts";
import { DeploymentGone, DeploymentUnreachable } from "../src/errors.ts";
import { silentLogger } from "../src/log.ts";
import type { AppRecord, RunRecord } from "../src/records.ts";
import { Registry } from "../src/registry.ts";
import { freshPglite } from "../../../test/support/pglite.ts";

let store: PostgresStore;
let ctx: EngineContext;
beforeAll(async () => {
  store = new PostgresStore(await freshPglite());
  ctx = { store, registry: new Registry(store, 0), log: silentLogger } as unknown as EngineContext;
});
afterAll(() => store.close());

let apps = 0;
/** A fresh app with version v1 at its own URL, and a run of it: the deployment it is pinned to. */
async function pinned() {
  const id = `app${++apps}`;
  await store.syncApp({ id, url: `http://127.0.0.1:1/${id}`, sdk: "test", features: [], syncedAt: new Date(), version: "v1", deploymentUrl: `http://127.0.0.1:2/${id}` }, []);
  const app = (await store.listApps()).find((a) => a.id === id)!;
  const run = { id: `run-${id}`, appVersion: "v1" } as RunRecord;
  const fresh = async () => deploymentOf((await store.listApps()).find((a) => a.id === id)!, run);
  return { app, run, target: deploymentOf(app, run), fresh };
}
const refused = () => new DeploymentGone("could not be reached (ECONNREFUSED)", true);
const outcome = (promise: Promise<void>) =>
  promise.then(
    () => "moved",
    (error: unknown) => (error instanceof DeploymentUnreachable ? (error.quiet ? "retry, quiet" : "retry") : `threw ${String(error)}`),
  );

it("a window of 0 takes the first refused connection for gone", async () => {
  const { app, run, target, fresh } = await pinned();
  expect(target.pinned).toBe(true);
  expect(await outcome(new DeploymentRefusals(0).leave(ctx, app as AppRecord, run, target, refused()))).toBe("moved");
  expect((await fresh()).pinned).toBe(false);
});

it("writes a deployment's refusal at most once a retry interval; the rest are retried quietly", async () => {
  const { app, run, target, fresh } = await pinned();
  const refusals = new DeploymentRefusals(10_000);
  expect(refusals.retryInMs).toBe(1_000);
  // A batch refused in the same moment: one write, the rest quiet.
  const batch = await Promise.all([1, 2, 3].map(() => outcome(refusals.leave(ctx, app, run, target, refused()))));
  expect(batch.sort()).toEqual(["retry", "retry, quiet", "retry, quiet"]);
  expect(await outcome(refusals.leave(ctx, app, run, target, refused()))).toBe("retry, quiet");
  expect(await fresh()).toMatchObject({ pinned: true, refusing: true });
});

it("an answer of the SDK ends the count, the function's error included; a failed connection or a proxy's page is no answer", async () => {
  const { app, run, target, fresh } = await pinned();
  const refusals = new DeploymentRefusals(10_000);
  await outcome(refusals.leave(ctx, app, run, target, refused()));
  const error = (name: string, message: string): InvokeResponse => ({ type: "error", error: { name, message }, retriable: true });
  for (const none of [error("AppUnreachable", "Could not reach it: ETIMEDOUT"), error("AppError", "The app answered HTTP 502: Bad Gateway")]) {
    await refusals.answered(ctx, app, run, target, none);
    expect((await fresh()).refusing).toBe(true);
  }
  await refusals.answered(ctx, app, run, target, error("TypeError", "cannot read properties of undefined"));
  expect((await fresh()).refusing).toBeUndefined();
});

it("an executor that never saw the refusal clears the count its registry shows, at its next answer", async () => {
  const { app, run, target, fresh } = await pinned();
  await outcome(new DeploymentRefusals(10_000).leave(ctx, app, run, target, refused()));
  const other = new DeploymentRefusals(10_000);
  const seenByOther = await fresh();
  expect(seenByOther.refusing).toBe(true);
  await other.answered(ctx, app, run, seenByOther, { type: "ops", ops: [] } as unknown as InvokeResponse);
  expect((await fresh()).refusing).toBeUndefined();
});
