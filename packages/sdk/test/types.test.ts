/**
 * Type inference users rely on: event data from schemas, typed send, typed waits, JSON results.
 * Checked by `tsc` (the `@ts-expect-error` lines must stay errors) and run by vitest.
 */
import { describe, expectTypeOf, it } from "vitest";
import { z } from "zod";
import { Stepwise, type CronEvent, type StepTools, type TypedEvent } from "../src/index.ts";

const stepwise = new Stepwise({
  id: "shop",
  schemas: {
    "order/created": z.object({ orderId: z.string(), total: z.number() }),
    "order/cancelled": z.object({ orderId: z.string(), reason: z.string().optional() }),
    "payment/settled": z.object({ orderId: z.string(), amount: z.number().default(0) }),
  },
});
type Schemas = NonNullable<typeof stepwise.schemas>;

describe("types", () => {
  it("types event.data from the trigger's schema", () => {
    stepwise.createFunction({ id: "one", triggers: [{ event: "order/created" }] }, async ({ event, events }) => {
      expectTypeOf(event.name).toEqualTypeOf<"order/created">();
      expectTypeOf(event.data).toEqualTypeOf<{ orderId: string; total: number }>();
      expectTypeOf(events).toEqualTypeOf<TypedEvent<Schemas, "order/created">[]>();
    });
  });

  it("gives a union over several triggers, narrowed by name", () => {
    stepwise.createFunction(
      { id: "two", triggers: [{ event: "order/created" }, { event: "order/cancelled" }] },
      async ({ event }) => {
        expectTypeOf(event.name).toEqualTypeOf<"order/created" | "order/cancelled">();
        if (event.name === "order/cancelled") expectTypeOf(event.data.reason).toEqualTypeOf<string | undefined>();
        else expectTypeOf(event.data.total).toEqualTypeOf<number>();
      },
    );
  });

  it("allows events without a schema, with data unknown", () => {
    stepwise.createFunction({ id: "three", triggers: [{ event: "cron/tick" }] }, async ({ event }) => {
      expectTypeOf(event.name).toEqualTypeOf<"cron/tick">();
      expectTypeOf(event.data).toEqualTypeOf<unknown>();
    });
  });

  it("types a cron trigger's event, alone and beside event triggers", () => {
    stepwise.createFunction({ id: "nightly", triggers: [{ cron: "TZ=Europe/Paris 0 3 * * *" }] }, async ({ event }) => {
      expectTypeOf(event).toEqualTypeOf<CronEvent>();
      expectTypeOf(event.name).toEqualTypeOf<"stepwise/cron">();
      expectTypeOf(event.data).toEqualTypeOf<{ cron: string; scheduledAt: string }>();
    });
    stepwise.createFunction({ id: "sync", triggers: [{ event: "order/created" }, { cron: "*/5 * * * *" }] }, async ({ event }) => {
      expectTypeOf(event.name).toEqualTypeOf<"order/created" | "stepwise/cron">();
      if (event.name === "stepwise/cron") expectTypeOf(event.data.scheduledAt).toEqualTypeOf<string>();
      else expectTypeOf(event.data.orderId).toEqualTypeOf<string>();
    });
    // @ts-expect-error a cron pattern is a string
    const bad = () => stepwise.createFunction({ id: "bad", triggers: [{ cron: 5 }] }, async () => {});
    // @ts-expect-error a trigger is an event or a cron pattern, not both
    const both = () => stepwise.createFunction({ id: "both", triggers: [{ event: "order/created", cron: "0 9 * * *" }] }, async () => {});
    expectTypeOf(bad).toBeFunction();
    expectTypeOf(both).toBeFunction();
  });

  it("types send() by event name", () => {
    expectTypeOf(stepwise.send).returns.resolves.toEqualTypeOf<{ ids: string[] }>();
    const typed = () => stepwise.send({ name: "order/created", data: { orderId: "o1", total: 3 } });
    const mixed = () =>
      stepwise.send([
        { name: "order/created", data: { orderId: "o1", total: 3 } },
        { name: "order/cancelled", data: { orderId: "o1" } },
        { name: "anything/else", data: { free: true } },
      ]);
    // @ts-expect-error data does not match the schema of order/created
    const wrong = () => stepwise.send({ name: "order/created", data: { orderId: 1 } });
    // @ts-expect-error data is required for an event with a schema
    const missing = () => stepwise.send({ name: "order/created" });
    const crossed = () =>
      stepwise.send([
        { name: "order/created", data: { orderId: "o1", total: 3 } },
        // @ts-expect-error order/cancelled's data does not fit order/created
        { name: "order/created", data: { orderId: "o1", reason: "x" } },
      ]);
    expectTypeOf(typed).toBeFunction();
    expectTypeOf(mixed).toBeFunction();
    expectTypeOf(wrong).toBeFunction();
    expectTypeOf(missing).toBeFunction();
    expectTypeOf(crossed).toBeFunction();
  });

  it("types the step tools", () => {
    stepwise.createFunction({ id: "four", triggers: [{ event: "order/created" }] }, async ({ step }) => {
      expectTypeOf(step).toEqualTypeOf<StepTools<Schemas>>();
      const paid = await step.waitForEvent("paid", { event: "payment/settled", timeout: "1d", match: "data.orderId" });
      expectTypeOf(paid).toEqualTypeOf<TypedEvent<Schemas, "payment/settled"> | null>();
      expectTypeOf(paid!.data.amount).toEqualTypeOf<number>();
      const at = await step.run("date", () => ({ at: new Date(), u: undefined as number | undefined, f: () => 1, tags: ["a"] as const }));
      expectTypeOf(at).toEqualTypeOf<{ at: string; u?: number; tags: ["a"] }>();
      const maybe = await step.run("maybe", async () => (Math.random() > 0.5 ? "x" : undefined));
      expectTypeOf(maybe).toEqualTypeOf<"x" | null>();
      const charged = await step.run({ id: "charge", retries: 5, backoff: { initialMs: 500 } }, async () => ({ amount: 3 }));
      expectTypeOf(charged).toEqualTypeOf<{ amount: number }>();
      // @ts-expect-error retries is a number
      void step.run({ id: "charge", retries: "5" }, () => 1);
      expectTypeOf(step.sleep("s", "5m")).toEqualTypeOf<Promise<void>>();
      expectTypeOf(step.sendEvent("notify", { name: "order/cancelled", data: { orderId: "o" } })).resolves.toEqualTypeOf<{ ids: string[] }>();
      // @ts-expect-error data does not match the schema
      void step.sendEvent("bad", { name: "order/cancelled", data: { order: "o" } });
    });
  });

  it("types step.invoke from the child function", () => {
    const child = stepwise.createFunction({ id: "child", triggers: [{ event: "payment/settled" }] }, async ({ event }) => ({
      charged: event.data.amount,
      at: new Date(),
    }));
    stepwise.createFunction({ id: "parent", triggers: [{ event: "order/created" }] }, async ({ step }) => {
      const result = await step.invoke("charge", { function: child, data: { orderId: "o1", amount: 3 } });
      expectTypeOf(result).toEqualTypeOf<{ charged: number; at: string }>();
      // @ts-expect-error the child's data needs an orderId
      void step.invoke("bad", { function: child, data: { amount: 3 } });
    });
  });

  it("types onFailure's event like the handler's", () => {
    stepwise.createFunction(
      {
        id: "five",
        triggers: [{ event: "order/created" }],
        cancelOn: [{ event: "order/cancelled", match: "data.orderId" }],
        onFailure: async ({ event, error, runId }) => {
          expectTypeOf(event.data).toEqualTypeOf<{ orderId: string; total: number }>();
          expectTypeOf(error).toEqualTypeOf<Error>();
          expectTypeOf(runId).toEqualTypeOf<string>();
        },
      },
      async () => "done",
    );
  });
});
