/**
 * The demo shop's durable functions: one order goes through every step tool.
 * Shared by the example apps (Node/Hono, Cloudflare Worker, AWS Lambda) so they stay alike.
 * Web APIs only, so the same module runs on Node, workerd and Lambda.
 */
import { NonRetriableError, Stepwise } from "@stepwise/sdk";
import { z } from "zod";

/** The shop's client: app ID `shop`, typed events; keys come from the environment per request. */
export const stepwise = new Stepwise({
  id: "shop",
  schemas: {
    "order/created": z.object({ orderId: z.string(), amount: z.number().positive(), email: z.string().optional() }),
    "order/paid": z.object({ orderId: z.string() }),
    "order/cancelled": z.object({ orderId: z.string() }),
    "email/requested": z.object({ to: z.string(), subject: z.string() }),
  },
});

/** Sends an email (pretend); invoked by `fulfil`, or triggered on its own by `email/requested`. */
export const sendEmail = stepwise.createFunction(
  { id: "send-email", triggers: [{ event: "email/requested" }], retries: 2 },
  async ({ event, step }) => {
    const messageId = await step.run("deliver", () => `msg-${event.data.to}-${Date.now().toString(36)}`);
    return { messageId };
  },
);

/** Fulfils an order: reserve, charge and pack in parallel, cool off, await payment, email a receipt. */
export const fulfilOrder = stepwise.createFunction(
  {
    id: "fulfil-order",
    triggers: [{ event: "order/created" }],
    retries: 3,
    cancelOn: [{ event: "order/cancelled", match: "data.orderId" }],
    onFailure: async ({ error, event, runId }) => {
      console.log(`order ${event.data.orderId} could not be fulfilled (run ${runId}): ${error.message}`);
    },
  },
  async ({ event, step, logger }) => {
    const { orderId, amount } = event.data;
    const reservation = await step.run("reserve-stock", () => {
      if (amount > 10_000) throw new NonRetriableError(`amount ${amount} is above the order limit`);
      return { reservationId: `res-${orderId}` };
    });
    const [charge, parcel] = await Promise.all([
      step.run("charge-card", () => ({ chargeId: `ch-${orderId}`, amount })),
      step.run("pack-parcel", () => ({ parcelId: `pcl-${orderId}` })),
    ]);
    await step.sleep("cool-off", "2s");
    const payment = await step.waitForEvent("wait-for-payment", { event: "order/paid", match: "data.orderId", timeout: "1m" });
    const receipt = await step.invoke("email-receipt", {
      function: sendEmail,
      data: { to: event.data.email ?? "customer@example.com", subject: `Order ${orderId}` },
    });
    await step.sendEvent("announce", { name: "order/fulfilled", data: { orderId } });
    logger.info(`order ${orderId} fulfilled`);
    return { orderId, reservation, charge, parcel, paid: payment !== null, receipt };
  },
);

/** Everything the shop serves on `/api/durable`. */
export const functions = [fulfilOrder, sendEmail];
