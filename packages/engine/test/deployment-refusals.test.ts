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
import { eventually } from "../../../test/support/eventually.ts";
import { freshPglite } from "../../../test/support/pglite.ts";

let store: PostgresStore;
let ctx: EngineContext;
beforeAll(async () => {
  store = new PostgresStore(await freshPglite());
  ctx = { store, registry: new Registry(store, 0), log: silentLogger } as unknown as EngineContext;
});
afterAll(() => store.close());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** What an SDK answers: the deployment is up. */
const sdkAnswer = { type: "ops", ops: [] } as unknown as InvokeResponse;

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
  await other.answered(ctx, app, run, seenByOther, sdkAnswer);
  expect((await fresh()).refusing).toBeUndefined();
});

it("an answer is told even where the registry does not show the count yet, so refusals around it never join", async () => {
  const { app, run, target, fresh } = await pinned();
  // One executor refuses, then dies before its next answer there; another, whose registry was
  // read before the refusal, gets an answer.
  expect(await outcome(new DeploymentRefusals(4_000).leave(ctx, app, run, target, refused()))).toBe("retry");
  expect(target.refusing).toBeUndefined();
  await new DeploymentRefusals(4_000).answered(ctx, app, run, target, sdkAnswer);
  // Told without the job waiting for it: a second at most.
  await eventually("the count ended", async () => ((await fresh()).refusing === undefined ? true : undefined), { timeoutMs: 1_000 });
  // The first one's successor refuses three times, each within a pause (2 s) of the last, over
  // the next 4.5 s: the window counted from the first refusal, but not from its own first.
  const successor = new DeploymentRefusals(4_000);
  expect(successor.pauseMs).toBe(2_000);
  for (let round = 0; round < 3; round++) {
    await sleep(1_500);
    expect(await outcome(successor.leave(ctx, app, run, target, refused()))).toBe("retry");
  }
  expect((await fresh()).pinned).toBe(true);
});

it("answers with no refusal seen are told at most once a write interval; after a refusal of its own, at once; with a window of 0, only a count shown", async () => {
  const { app, run, target } = await pinned();
  let told = 0;
  const store = ctx.store;
  const counting = {
    ...ctx,
    store: new Proxy(store, {
      get(inner, name) {
        if (name === "deploymentAnswered") return (...args: Parameters<typeof store.deploymentAnswered>) => (told++, inner.deploymentAnswered(...args));
        const value = Reflect.get(inner, name) as unknown;
        return typeof value === "function" ? value.bind(inner) : value;
      },
    }),
  } as EngineContext;
  const refusals = new DeploymentRefusals(10_000);
  await Promise.all([1, 2, 3].map(() => refusals.answered(counting, app, run, target, sdkAnswer)));
  expect(told).toBe(1);
  await sleep(refusals.writeEveryMs + 20);
  await refusals.answered(counting, app, run, target, sdkAnswer);
  expect(told).toBe(2);
  await outcome(refusals.leave(counting, app, run, target, refused()));
  await refusals.answered(counting, app, run, target, sdkAnswer);
  expect(told).toBe(3);
  // A window of 0 keeps no count of its own: it tells only a count its registry shows (another
  // executor's, with a window of its own).
  const zero = new DeploymentRefusals(0);
  await zero.answered(counting, app, run, target, sdkAnswer);
  expect(told).toBe(3);
  await zero.answered(counting, app, run, { ...target, refusing: true }, sdkAnswer);
  expect(told).toBe(4);
});

it("a window is 4 s at least, twice the pause: two refusals around a stall that sent nothing are not a window", async () => {
  const { app, run, target, fresh } = await pinned();
  const refusals = new DeploymentRefusals(1_000);
  expect(refusals.goneAfterMs).toBe(4_000);
  expect(refusals.pauseMs).toBeLessThanOrEqual(refusals.goneAfterMs / 2);
  expect(await outcome(refusals.leave(ctx, app, run, target, refused()))).toBe("retry");
  // Longer than the window asked for, shorter than the pause.
  await sleep(1_100);
  expect(await outcome(refusals.leave(ctx, app, run, target, refused()))).toBe("retry");
  expect((await fresh()).pinned).toBe(true);
});
