/**
 * Where callback URLs meet the rest of the executor (each found by review): a POST answered 200 is
 * its run's even in the last milliseconds before the URL expires; one app's key never reaches
 * another app's run; no function starts on a callback's POST; a URL outliving the executor's
 * retention is not made.
 */
import { mintCallbackToken } from "@stepwise/protocol";
import { Stepwise, type CallbackUrl } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

/** Waits until the run of `eventId` has created its callback, and returns it. */
async function callbackOf(stack: Stack, eventId: string, stepId = "link"): Promise<{ runId: string; callback: CallbackUrl }> {
  for (let tries = 0; tries < 2_000; tries++) {
    const [run] = await stack.runsOf(eventId);
    const step = run && (await stack.getRun(run.id)).steps.find((s) => s.id === stepId && s.status === "completed");
    if (step) return { runId: run!.id, callback: step.output as CallbackUrl };
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error("the run never created its callback");
}

const post = (url: string, body: unknown) => fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });

const racing = new Stepwise({ id: "cb-race", dev: true, schemas: { "race/go": z.object({ n: z.number() }) } });
const lastMoment = racing.createFunction({ id: "review", triggers: [{ event: "race/go" }] }, async ({ step }) => {
  const callback = await step.createCallback("link", { timeout: "2s" });
  const reply = await step.waitForCallback<{ n: number }>("reply", callback);
  await step.sleep("after", 500);
  return reply ? reply.body : "timed out";
});

describe.each(STORE_KINDS)("callback POSTs in the last milliseconds before expiry on %s", (store) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store, client: racing, functions: [lastMoment] });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("a POST answered 200 is the run's; one answered 410 is not", async () => {
    const outcomes = await Promise.all(
      Array.from({ length: 16 }, async (_, n) => {
        const [eventId] = await stack.send({ name: "race/go", data: { n } });
        const { callback } = await callbackOf(stack, eventId!);
        // From 8 ms before the expiry to 7 ms after it.
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, Date.parse(callback.expiresAt) - Date.now() - 8 + n)));
        const status = (await post(callback.url, { n })).status;
        const run = await stack.waitForRun(eventId!, { timeoutMs: 20_000 });
        return { n, status, got: run.output };
      }),
    );
    for (const { n, status, got } of outcomes) {
      expect([200, 410], `run ${n}`).toContain(status);
      expect(got, `run ${n} (POST answered ${status})`).toEqual(status === 200 ? { n } : "timed out");
    }
  }, 120_000);
});

// An app with a key of its own, and another on the shared key.
const keys = { dev: false, eventKey: "event-key" } as const;
const shop = new Stepwise({ id: "shop", ...keys, signingKey: "shop-own-key", schemas: { "shop/review": z.object({}) } });
const review = shop.createFunction({ id: "review", triggers: [{ event: "shop/review" }] }, async ({ step }) => {
  const callback = await step.createCallback("link", { timeout: "1m" });
  const reply = await step.waitForCallback<{ from: string }>("reply", callback);
  return reply?.body.from ?? null;
});
const other = new Stepwise({ id: "other", ...keys, signingKey: "shared-key" });

describe("callback URLs across apps (PGlite)", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      store: "pglite",
      client: shop,
      functions: [review],
      executor: { dev: false, signingKey: "shared-key", appSigningKeys: { shop: "shop-own-key" }, eventKey: "event-key", apiKey: "api-key", publicUrl: "http://placeholder.invalid" },
    });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("a token another app's key signed for this app's run is refused with 403; the real URL still works", async () => {
    const [eventId] = await stack.send({ name: "shop/review", data: {} });
    const { runId, callback } = await callbackOf(stack, eventId!);
    const token = callback.url.slice(callback.url.lastIndexOf("/") + 1);
    const forged = await mintCallbackToken("shared-key", { appId: "other", runId, stepId: "link", expiresAt: Date.parse(callback.expiresAt) });
    const refused = await post(`${stack.executor.url}/api/callbacks/${forged}`, { from: "attacker" });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: string }).error).toMatch(/Not a valid callback URL/);
    expect((await post(`${stack.executor.url}/api/callbacks/${token}`, { from: "reviewer" })).status).toBe(200);
    expect((await stack.waitForRun(eventId!)).output).toBe("reviewer");
  });

  it("no app may start a function on callbacks' POSTs (or signals): such a function is refused where it is defined", () => {
    for (const event of ["stepwise/callback", "stepwise/signal"]) {
      expect(() => other.createFunction({ id: `listen-${event.length}`, triggers: [{ event }] }, async () => null)).toThrow(/a trigger cannot be a signal or a callback's POST/);
    }
  });
});

describe("a callback URL longer-lived than the executor keeps events (PGlite)", () => {
  const client = new Stepwise({ id: "cb-retention", dev: true, schemas: { "ret/go": z.object({}) } });
  const fn = client.createFunction({ id: "go", triggers: [{ event: "ret/go" }] }, async ({ step }) => step.createCallback("link", { timeout: "2h" }));
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store: "pglite", client, functions: [fn], executor: { retentionMs: 3_600_000 } });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("is not made: its step fails, saying why", async () => {
    const [eventId] = await stack.send({ name: "ret/go", data: {} });
    const run = await stack.waitForRun(eventId!);
    expect(run.status).toBe("failed");
    expect(run.error?.message).toMatch(/step\.createCallback "link": its timeout is longer than the executor keeps events \(60m 0s, STEPWISE_RETENTION\)/);
  });
});
