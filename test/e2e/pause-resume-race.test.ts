/**
 * A job a pause kept (it holds a concurrency slot), claimed again once its holder's lease ran
 * out, read as paused, and resumed before that worker's commit: the resume's invocation was not
 * written (the kept job held its place), so the worker's commit must queue it, or the run is
 * left live with no job (the simulation's "stranded ... queued invoke").
 */
import { Executor, type Store } from "@stepwise/engine";
import { DEV_SIGNING_KEY } from "@stepwise/protocol";
import { Stepwise } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/fetch";
import { PostgresStore } from "@stepwise/store-postgres";
import { expect, it } from "vitest";
import { freshPglite } from "../support/pglite.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it("a run resumed between a worker's paused read and its commit keeps a job", async () => {
  const client = new Stepwise({ id: "race", dev: true, checkpointing: false });
  let entered = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const fn = client.createFunction({ id: "chain", triggers: [{ event: "chain/start" }], concurrency: 1 }, async ({ step }) => {
    await step.run("a", async () => {
      if (++entered === 1) await gate;
      return 1;
    });
    return step.run("b", () => 2);
  });
  const handler = serve({ client, functions: [fn] });
  const sql = await freshPglite();
  const inner = new PostgresStore(sql);
  let executor!: Executor;
  let armed: string | null = null;
  // Resumes the run right after a worker read it paused: the window between read and commit.
  const store = new Proxy(inner, {
    get(target, prop) {
      if (prop === "loadRunState") {
        return async (...args: Parameters<Store["loadRunState"]>) => {
          const state = await target.loadRunState(...args);
          if (armed === args[0] && state?.run.paused) {
            armed = null;
            await executor.resumeRun(args[0]);
          }
          return state;
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  }) as Store;
  executor = new Executor({
    store,
    signingKey: DEV_SIGNING_KEY,
    publicUrl: "http://executor.test",
    concurrency: 4,
    leaseMs: 2_000,
    maintenanceMs: 100,
    pollMs: 50,
    log: { info: () => {}, warn: () => {}, error: () => {} },
    fetch: async (input, init) => handler(new Request(input as string, init)),
  });
  await executor.start();
  try {
    const description = (await (await handler(new Request("http://app.test/api/durable"))).json()) as Record<string, unknown>;
    await executor.syncApp({ ...description, deploymentUrl: "http://app.test/api/durable" });
    const { ids } = await executor.sendEvents({ name: "chain/start", data: {} });
    while (entered === 0) await sleep(10);
    const [run] = await executor.listRunsForEvent(ids[0]!);
    await executor.pauseRun(run!.id);
    // Kept: it holds the run's slot. Its holder then stalls past its lease; another lane claims it.
    expect(await sql.query("SELECT kind FROM jobs WHERE run_id = $1", [run!.id])).toHaveLength(1);
    armed = run!.id;
    await sql.query("UPDATE jobs SET locked_by = 'stalled', locked_until = now() - interval '1 second' WHERE run_id = $1", [run!.id]);
    for (let i = 0; i < 200 && armed; i++) await sleep(25);
    expect(armed).toBeNull();
    release();
    // Done, not waiting for the 30 s repair of stranded runs.
    for (let i = 0; i < 200 && (await executor.getRun(run!.id))?.status !== "completed"; i++) await sleep(25);
    expect((await executor.getRun(run!.id))?.status).toBe("completed");
  } finally {
    release();
    await executor.stop(500);
    await sql.close();
  }
});
