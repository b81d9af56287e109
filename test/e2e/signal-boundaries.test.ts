/**
 * Where signals meet the rest of the executor: their IDs are their own (an event with the same ID
 * is another thing); a name is never taken over across apps, nor does a conflict name another
 * app's run; a sender that gave up is not delivered to afterwards; an operator's rerun may give
 * a signal step the shape the function sees; and only the executor's "no run waits" is a
 * SignalNotDeliveredError. Each was found by review.
 */
import { serve as serveNode, type ServerType } from "@hono/node-server";
import { NO_WAITING_RUN } from "@stepwise/protocol";
import { SignalNotDeliveredError, Stepwise, StepwiseApiError } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/hono";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, type Stack } from "../support/stack.ts";

const EVENT_KEY = "event-key";
const keys = { dev: false, eventKey: EVENT_KEY } as const;

// An app with a signing key of its own, and another on the shared key: isolated from each other.
const shop = new Stepwise({ id: "shop", ...keys, signingKey: "shop-own-key", schemas: { "shop/order": z.object({ signal: z.string(), busyMs: z.number(), timeoutMs: z.number() }) } });
const approval = shop.createFunction({ id: "approval", triggers: [{ event: "shop/order" }] }, async ({ event, step }) => {
  if (event.data.busyMs > 0) await step.sleep("busy", event.data.busyMs);
  const got = await step.waitForSignal<{ by: string }>("approved", { signal: event.data.signal, timeout: event.data.timeoutMs });
  return got ? got.data.by : null;
});
const other = new Stepwise({ id: "other", ...keys, signingKey: "shared-key", schemas: { "other/grab": z.object({ signal: z.string(), onConflict: z.enum(["fail", "replace"]) }) } });
const grab = other.createFunction({ id: "grab", triggers: [{ event: "other/grab" }] }, async ({ event, step }) => {
  try {
    const got = await step.waitForSignal("grab", { signal: event.data.signal, timeout: 5_000, onConflict: event.data.onConflict });
    return { got };
  } catch (error) {
    return { failed: (error as Error).name, message: (error as Error).message };
  }
});

describe("signals at their boundaries (PGlite)", () => {
  let stack: Stack;
  let otherServer: ServerType;
  beforeAll(async () => {
    stack = await startStack({
      store: "pglite",
      client: shop,
      functions: [approval],
      executor: { dev: false, signingKey: "shared-key", appSigningKeys: { shop: "shop-own-key" }, eventKey: EVENT_KEY, apiKey: "api-key", signalGraceMs: 1_500 },
    });
    const app = new Hono();
    const url = await new Promise<string>((resolve) => {
      otherServer = serveNode({ fetch: (request) => app.fetch(request), port: 0, hostname: "127.0.0.1" }, (info) => resolve(`http://127.0.0.1:${info.port}/api/durable`));
    });
    app.all("/api/durable", serve({ client: other, functions: [grab], serveUrl: url }));
    expect((await fetch(url, { method: "PUT" })).status).toBe(200);
  }, 60_000);
  afterAll(async () => {
    await new Promise<void>((resolve) => {
      otherServer?.close(() => resolve());
      (otherServer as { closeAllConnections?: () => void } | undefined)?.closeAllConnections?.();
    });
    await stack?.close();
  });

  let n = 0;
  const order = async (data: { busyMs?: number; timeoutMs?: number } = {}) => {
    const signal = `shop/approval/${++n}-${Date.now()}`;
    const [eventId] = await stack.send({ name: "shop/order", data: { signal, busyMs: data.busyMs ?? 0, timeoutMs: data.timeoutMs ?? 10_000 } });
    return { signal, eventId: eventId! };
  };
  const post = (path: string, body: unknown, init: RequestInit = {}) =>
    fetch(`${stack.executor.url}${path}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${EVENT_KEY}` }, body: JSON.stringify(body), ...init });

  it("a signal's ID and an event's are separate: each is delivered or stored as if the other were not there", async () => {
    const { signal, eventId } = await order();
    await stack.waitForRun(eventId, { status: "waiting" });
    const id = `approval-${Date.now()}`;
    // An event first, under the ID the signal will use.
    const [stored] = await stack.send({ name: "shop/order", data: { signal: `${signal}-unused`, busyMs: 0, timeoutMs: 300 }, id });
    expect(stored).toBe(id);
    const sent = await shop.sendSignal({ signal, data: { by: "ada" }, id });
    expect(sent).toMatchObject({ id, stepId: "approved" });
    expect(sent.duplicate).toBeUndefined();
    expect((await stack.waitForRun(eventId)).output).toBe("ada");
    // And the event under that ID started its own run.
    expect((await stack.waitForRun(id)).status).toBe("completed");
  });

  it("another app's wait neither takes a signal over nor learns who waits for it", async () => {
    const { signal, eventId } = await order();
    const waiting = await stack.waitForRun(eventId, { status: "waiting" });
    for (const onConflict of ["replace", "fail"] as const) {
      const [grabEvent] = await stack.send({ name: "other/grab", data: { signal, onConflict } });
      const grabbed = await stack.waitForRun(grabEvent!);
      expect(grabbed.output).toMatchObject({ failed: "SignalConflict", message: expect.stringContaining("a run of another app already waits for signal") });
      expect(JSON.stringify(grabbed.output)).not.toContain(waiting.id);
    }
    // The signal still reaches the shop's run.
    const sent = await shop.sendSignal({ signal, data: { by: "ada" } });
    expect(sent.runId).toBe(waiting.id);
    expect((await stack.waitForRun(eventId)).output).toBe("ada");
  });

  it("a sender that gave up before the run waited is not delivered to afterwards", async () => {
    const { signal, eventId } = await order({ busyMs: 800, timeoutMs: 1_500 });
    const gaveUp = await post("/api/signals", { signal, data: { by: "someone who saw an error" } }, { signal: AbortSignal.timeout(200) }).then(
      () => "answered",
      (error: unknown) => (error as Error).name,
    );
    expect(gaveUp).toBe("TimeoutError");
    // The run reaches its wait after the sender left, and times out with nothing.
    expect((await stack.waitForRun(eventId)).output).toBeNull();
  });

  it("only the executor's own 'no run waits' is a SignalNotDeliveredError; a 404 of a missing route is a plain StepwiseApiError", async () => {
    const refused = await post("/api/signals", { signal: "shop/approval/nobody" });
    expect(refused.status).toBe(404);
    expect(await refused.json()).toMatchObject({ code: NO_WAITING_RUN });
    const elsewhere = new Stepwise({ id: "shop", ...keys, baseUrl: `${stack.executor.url}/not-the-executor` });
    const error = await elsewhere.sendSignal({ signal: "shop/approval/x" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StepwiseApiError);
    expect(error).not.toBeInstanceOf(SignalNotDeliveredError);
    expect((error as StepwiseApiError).status).toBe(404);
  });
});

describe("a rerun that gives a signal step the shape the function sees (PGlite)", () => {
  const client = new Stepwise({ id: "rerun-signal", dev: true, schemas: { "rs/start": z.object({ signal: z.string() }) } });
  const fn = client.createFunction({ id: "approve", triggers: [{ event: "rs/start" }] }, async ({ event, step }) => {
    const got = await step.waitForSignal<{ by: string }>("approved", { signal: event.data.signal, timeout: 10_000 });
    return await step.run("record", () => got?.data.by ?? null);
  });
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store: "pglite", client, functions: [fn], executor: { signalGraceMs: 1_000 } });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("reads either shape, and refuses one that is no signal with an error naming the step", async () => {
    const signal = `rs/${Date.now()}`;
    const [eventId] = await stack.send({ name: "rs/start", data: { signal } });
    await stack.waitForRun(eventId!, { status: "waiting" });
    await client.sendSignal({ signal, data: { by: "ada" } });
    const first = await stack.waitForRun(eventId!);
    expect(first.output).toBe("ada");
    const rerun = async (output: unknown) => {
      const response = await fetch(`${stack.executor.url}/api/runs/${first.id}/rerun`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ fromStep: "approved", output }) });
      expect(response.status, await response.clone().text()).toBe(200);
      const run = (await response.json()) as { id: string };
      for (let tries = 0; tries < 400; tries++) {
        const view = await stack.getRun(run.id);
        if (["completed", "failed"].includes(view.status)) return view;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      throw new Error("the rerun did not end");
    };
    expect((await rerun({ signal, data: { by: "ops" } })).output).toBe("ops");
    const refused = await rerun({ orderId: 7 });
    expect(refused.status).toBe("failed");
    expect(refused.error?.message).toMatch(/step\.waitForSignal\("approved"\): its stored result is not a signal/);
  });
});
