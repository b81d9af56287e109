/**
 * The example shop's functions on three `stepwise start` processes sharing PostgreSQL (Neon
 * driver) and Redis (@upstash/redis): the production topology, every step tool, to the end.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster, SIGNING_KEY } from "../support/cluster.ts";
import { postgresAvailable } from "../support/postgres.ts";
import { redisAvailable } from "../support/redis.ts";

// The example reads its keys from the environment on every request, as a deployed app would.
process.env.STEPWISE_SIGNING_KEY = SIGNING_KEY;
const { functions, stepwise } = await import("@stepwise/example-shop");

describe.runIf(postgresAvailable && redisAvailable)("the example app on three executors", () => {
  const cluster = new Cluster({ client: stepwise, functions, executors: 3, redisDb: 0 });
  beforeAll(async () => cluster.start(), 120_000);
  afterAll(async () => cluster.stop(), 60_000);

  it("fulfils orders through every step tool, across executors", { timeout: 90_000 }, async () => {
    const orders = ["o-1", "o-2", "o-3", "o-4", "o-5", "o-6"];
    const ids = await cluster.send(orders.map((orderId) => ({ name: "order/created", data: { orderId, amount: 25 } })));
    const sql = cluster.db!.client();
    const waiting = async () =>
      (await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM runs WHERE status = 'waiting' AND function_id = 'shop-fulfil-order'"))[0]!.n;
    const deadline = Date.now() + 60_000;
    while ((await waiting()) < orders.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    await cluster.send(orders.map((orderId) => ({ name: "order/paid", data: { orderId } })));

    let runs = await cluster.runs(ids);
    while (runs.some((run) => run.status !== "completed") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      runs = await cluster.runs(ids);
    }
    expect(runs.map((run) => run.status), cluster.logs().slice(-3_000)).toEqual(orders.map(() => "completed"));
    for (const run of runs) {
      const output = run.output as { paid: boolean; receipt: { messageId: string }; charge: { amount: number } };
      expect(output.paid).toBe(true);
      expect(output.charge.amount).toBe(25);
      expect(output.receipt.messageId).toMatch(/^msg-/);
      expect(run.steps.map((s) => s.name)).toEqual([
        "reserve-stock", "charge-card", "pack-parcel", "cool-off", "wait-for-payment", "email-receipt", "announce",
      ]);
    }
    // Which executors did the work (the one that received the events wakes first; the others poll).
    const busy = cluster.executors.map((e) => (e.output.join("").match(/step "[\w-]+" completed/g) ?? []).length);
    console.log(`example on 3 executors: steps completed per executor ${JSON.stringify(busy)}`);
  });
});
