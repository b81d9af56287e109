/**
 * `idempotency`: one run per key per function within 24 hours, over real HTTP on every store:
 * across separate sends, inside one burst, across two executors sending at once; events
 * without a key start their run; a bad expression is refused where it is written and at sync.
 */
import { DEV_SIGNING_KEY } from "@stepwise/protocol";
import { Executor, silentLogger } from "@stepwise/engine";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const charges = new Map<string, number>();
const client = new Stepwise({
  id: "idem",
  dev: true,
  schemas: { "order/paid": z.object({ orderId: z.string().optional(), amount: z.number() }), "order/raw": z.object({ key: z.unknown(), n: z.number() }) },
});
const charge = client.createFunction(
  { id: "charge", triggers: [{ event: "order/paid" }], idempotency: "event.data.orderId" },
  async ({ event, step }) =>
    step.run("charge", () => {
      const key = event.data.orderId ?? `no-key-${event.id}`;
      charges.set(key, (charges.get(key) ?? 0) + 1);
      return event.data.amount;
    }),
);

// Keys of any value: no text a store would refuse, no two values taken for one.
const raw = client.createFunction({ id: "raw", triggers: [{ event: "order/raw" }], idempotency: "event.data.key" }, async ({ event }) => event.data.n);

describe.each(STORE_KINDS)("idempotency on %s", (store) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store, client, functions: [charge, raw] });
  });
  afterAll(async () => stack?.close());

  it("starts one run per key: a second event with the key is stored and starts nothing", async () => {
    const orderId = `o1-${store}`;
    const [first] = await stack.send({ name: "order/paid", data: { orderId, amount: 10 } });
    const run = await stack.waitForRun(first!);
    expect(run).toMatchObject({ status: "completed", output: 10 });
    const [second] = await stack.send({ name: "order/paid", data: { orderId, amount: 99 } });
    const [other] = await stack.send({ name: "order/paid", data: { orderId: `o2-${store}`, amount: 20 } });
    expect((await stack.waitForRun(other!)).output).toBe(20);
    expect(await stack.runsOf(second!)).toEqual([]);
    expect(charges.get(orderId)).toBe(1);
    expect(stack.log.lines.some((line) => line.includes(`event ${second} (order/paid) starts no run of idem-charge: idempotency key "${orderId}" is held by run ${run.id}`))).toBe(true);
  });

  it("within one burst, the first event of a key starts the run", async () => {
    const orderId = `burst-${store}`;
    const ids = await stack.send([1, 2, 3].map((amount) => ({ name: "order/paid", data: { orderId, amount } })));
    const run = await stack.waitForRun(ids[0]!);
    expect(run.output).toBe(1);
    for (const id of ids.slice(1)) expect(await stack.runsOf(id)).toEqual([]);
    expect(charges.get(orderId)).toBe(1);
  });

  it("an event the expression has no value for starts its run, with a warning", async () => {
    const [a] = await stack.send({ name: "order/paid", data: { amount: 5 } });
    const [b] = await stack.send({ name: "order/paid", data: { amount: 6 } });
    expect((await stack.waitForRun(a!)).output).toBe(5);
    expect((await stack.waitForRun(b!)).output).toBe(6);
    expect(stack.log.lines.some((line) => line.includes(`its idempotency key (event.data.orderId) has no value for event ${a}`))).toBe(true);
  });

  it("takes any key value: NUL, lone surrogates, 10 KB of text; \"1\" and 1 are two keys", async () => {
    const keys = [`a\u0000b-${store}`, `x\ud800-${store}`, `x\udbff-${store}`, `${store}-`.repeat(1_000), `1${store}`, 1, { nested: [store] }];
    const first = await stack.send(keys.map((key, n) => ({ name: "order/raw", data: { key, n } })));
    const again = await stack.send(keys.map((key, n) => ({ name: "order/raw", data: { key, n: n + 100 } })));
    for (const [n, id] of first.entries()) expect((await stack.waitForRun(id)).output, `key ${n}`).toBe(n);
    for (const id of again) expect(await stack.runsOf(id)).toEqual([]);
    const [asText] = await stack.send({ name: "order/raw", data: { key: "1", n: 7 } });
    expect((await stack.waitForRun(asText!)).output).toBe(7);
  });

  it("two executors taking the same keys at once start one run per key between them", async () => {
    const second = new Executor({ store: stack.store, signingKey: DEV_SIGNING_KEY, log: silentLogger, registryRefreshMs: 0 });
    await second.start();
    try {
      const keys = Array.from({ length: 8 }, (_, n) => `race-${store}-${n}`);
      const sent = await Promise.all(
        keys.flatMap((orderId) => [
          stack.send({ name: "order/paid", data: { orderId, amount: 1 } }),
          second.sendEvents({ name: "order/paid", data: { orderId, amount: 2 } }).then((result) => result.ids),
        ]),
      );
      for (const [n, orderId] of keys.entries()) {
        const runs = [...(await stack.runsOf(sent[2 * n]![0]!)), ...(await stack.runsOf(sent[2 * n + 1]![0]!))];
        expect(runs, orderId).toHaveLength(1);
        expect((await stack.waitForRun(runs[0]!.eventId)).status).toBe("completed");
        expect(charges.get(orderId), orderId).toBe(1);
      }
    } finally {
      await second.stop();
    }
  });

  it("refuses a bad expression at sync, naming the function and the option", async () => {
    const description = { appId: "idem-bad", url: "http://127.0.0.1:9/api/durable", sdk: "raw", functions: [{ id: "f", triggers: [{ event: "a/b" }], retries: 0, idempotency: "event.data.orderId ==" }] };
    await expect(stack.executor.executor.syncApp(description)).rejects.toThrow(/function "f" \(functions\.0\): idempotency: "event\.data\.orderId ==" is not a valid CEL expression/);
  });
});

describe("configuration expressions in the SDK", () => {
  it("refuses a bad CEL expression at createFunction, naming the function and the option", () => {
    expect(() => client.createFunction({ id: "f", triggers: [{ event: "order/paid" }], idempotency: "event.data.orderId ==" }, () => {})).toThrow(
      /createFunction\("f"\): idempotency: "event\.data\.orderId ==" is not a valid CEL expression \(Unexpected token: EOF\)/,
    );
    expect(() => client.createFunction({ id: "f", triggers: [{ event: "order/paid", if: "event.data.amount >" }] }, () => {})).toThrow(/triggers\.0\.if: "event\.data\.amount >" is not a valid CEL/);
    expect(() => client.createFunction({ id: "f", triggers: [{ event: "order/paid" }], cancelOn: [{ event: "x/y", if: "a b" }] }, () => {})).toThrow(/cancelOn\.0\.if: "a b" is not a valid CEL/);
  });
});
