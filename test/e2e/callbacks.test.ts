/**
 * Callback URLs: `step.createCallback` gives a run a signed, single-use, expiring URL that needs
 * no key; `step.waitForCallback` resolves to the first POST's `{ body, headers }`, whether it came
 * before the wait or after, or `null` when the URL expires. A tampered, expired or used URL is
 * refused with a 4xx that says why, and changes nothing.
 */
import { mintCallbackToken } from "@stepwise/protocol";
import { Stepwise, type CallbackUrl } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const client = new Stepwise({
  id: "callbacks",
  dev: true,
  schemas: {
    "review/requested": z.object({ busyMs: z.number(), timeout: z.string() }),
    "review/bad": z.object({ timeout: z.string() }),
  },
});

/** Creates a callback, hands it out (the test reads it from the run), is busy a while, then waits for it. */
const review = client.createFunction({ id: "review", triggers: [{ event: "review/requested" }] }, async ({ event, step }) => {
  const callback = await step.createCallback("review-link", { timeout: event.data.timeout });
  await step.run("email-reviewer", () => callback.url);
  if (event.data.busyMs > 0) await step.sleep("busy", event.data.busyMs);
  const reply = await step.waitForCallback<{ approved: boolean }>("reviewed", callback);
  return reply ? { body: reply.body, contentType: reply.headers["content-type"] ?? null, auth: reply.headers.authorization ?? null, from: reply.headers["x-from"] ?? null } : null;
});

const badTimeout = client.createFunction({ id: "bad-timeout", triggers: [{ event: "review/bad" }] }, async ({ event, step }) => {
  await step.createCallback("link", { timeout: event.data.timeout });
});

/** The shared key that comes next, during a rotation (`STEPWISE_SIGNING_KEY_NEXT`). */
const NEXT_KEY = "callbacks-next-key";

describe.each(STORE_KINDS)("callback URLs on %s", (store) => {
  let stack: Stack;
  beforeAll(async () => {
    // Mid-rotation: another executor may already sign with the next key.
    stack = await startStack({ store, client, functions: [review, badTimeout], executor: { signingKeyNext: NEXT_KEY } });
  }, 60_000);
  afterAll(async () => stack?.close());

  /** Starts a review; resolves the run's callback (as the run stored it) once it has one. */
  const request = async (busyMs: number, timeout = "1m") => {
    const [eventId] = await stack.send({ name: "review/requested", data: { busyMs, timeout } });
    for (let tries = 0; tries < 400; tries++) {
      const [run] = await stack.runsOf(eventId!);
      const step = run && (await stack.getRun(run.id)).steps.find((s) => s.id === "review-link" && s.status === "completed");
      if (step) return { eventId: eventId!, runId: run!.id, callback: step.output as CallbackUrl };
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error("the run never created its callback");
  };
  const post = async (url: string, body: string, headers: Record<string, string> = { "content-type": "application/json" }) => {
    const response = await fetch(url, { method: "POST", body, headers });
    return { status: response.status, body: (await response.json()) as { ok?: boolean; error?: string } };
  };

  it("a POST to the URL resumes the waiting run with its body and headers; no key is needed, and credentials are not kept", async () => {
    const { eventId, runId, callback } = await request(0);
    expect(callback.url).toMatch(new RegExp(`^${stack.executor.url}/api/callbacks/[A-Za-z0-9_-]+\\.[0-9a-f]{64}$`));
    expect(callback.id).toMatch(/^cb_[0-9a-f]{32}$/);
    await stack.waitForRun(eventId, { status: "waiting" });
    const answer = await post(callback.url, JSON.stringify({ approved: true }), { "content-type": "application/json", authorization: "Bearer secret", "x-from": "reviewer" });
    expect(answer).toEqual({ status: 200, body: { ok: true } });
    const run = await stack.waitForRun(eventId);
    expect(run.id).toBe(runId);
    expect(run.output).toEqual({ body: { approved: true }, contentType: "application/json", auth: null, from: "reviewer" });
  });

  it("a POST that comes before the run reaches its wait is kept for it", async () => {
    const { eventId, callback } = await request(700);
    const answer = await post(callback.url, "looks good", { "content-type": "text/plain" });
    expect(answer.status).toBe(200);
    expect((await stack.waitForRun(eventId)).output).toMatchObject({ body: "looks good", contentType: "text/plain" });
  });

  it("a used URL answers 409 and changes nothing", async () => {
    const { eventId, callback } = await request(0);
    await stack.waitForRun(eventId, { status: "waiting" });
    expect((await post(callback.url, JSON.stringify({ approved: true }))).status).toBe(200);
    const again = await post(callback.url, JSON.stringify({ approved: false }));
    expect(again.status).toBe(409);
    expect(again.body.error).toMatch(/used already/);
    expect((await stack.waitForRun(eventId)).output).toMatchObject({ body: { approved: true } });
  });

  it("a tampered URL answers 403 and changes nothing; the real one still works", async () => {
    const { eventId, callback } = await request(0);
    await stack.waitForRun(eventId, { status: "waiting" });
    const [base, token] = callback.url.split("/api/callbacks/") as [string, string];
    const [payload, signature] = token.split(".") as [string, string];
    // Another step of the same run, and a flipped signature digit: both refused.
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, "base64url").toString()), s: "email-reviewer" })).toString("base64url");
    for (const bad of [`${forged}.${signature}`, `${payload}.${signature.slice(0, -1)}${signature.endsWith("0") ? "1" : "0"}`, `${payload}`, "nonsense"]) {
      const answer = await post(`${base}/api/callbacks/${bad}`, JSON.stringify({ approved: false }));
      expect(answer.status, bad).toBe(403);
      expect(answer.body.error).toMatch(/Not a valid callback URL/);
    }
    expect((await stack.getRun((await stack.runsOf(eventId))[0]!.id)).status).toBe("waiting");
    expect((await post(callback.url, JSON.stringify({ approved: true }))).status).toBe(200);
    expect((await stack.waitForRun(eventId)).output).toMatchObject({ body: { approved: true } });
  });

  it("during a key rotation, takes a URL signed with the next key, and still refuses one signed with any other", async () => {
    const { eventId, callback } = await request(0);
    await stack.waitForRun(eventId, { status: "waiting" });
    const [base, token] = callback.url.split("/api/callbacks/") as [string, string];
    const { a, r, s, e } = JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString()) as { a: string; r: string; s: string; e: number };
    const claims = { appId: a, runId: r, stepId: s, expiresAt: e };
    const foreign = await post(`${base}/api/callbacks/${await mintCallbackToken("some-other-key", claims)}`, JSON.stringify({ approved: false }));
    expect(foreign.status).toBe(403);
    // As an executor that already signs with the next key made it.
    expect((await post(`${base}/api/callbacks/${await mintCallbackToken(NEXT_KEY, claims)}`, JSON.stringify({ approved: true }))).status).toBe(200);
    expect((await stack.waitForRun(eventId)).output).toMatchObject({ body: { approved: true } });
  });

  it("an expired URL answers 410, and the wait has resolved null", async () => {
    const { eventId, callback } = await request(0, "400ms");
    const run = await stack.waitForRun(eventId);
    expect(run.output).toBeNull();
    const late = await post(callback.url, JSON.stringify({ approved: true }));
    expect(late.status).toBe(410);
    // The run went on past its wait and ended: either says the URL is no longer taken.
    expect(late.body.error).toMatch(/expired at|has ended/);
  });

  it("refuses a body its content-type misdescribes with a 400, and a GET with a 405; the URL still takes its POST", async () => {
    const { eventId, callback } = await request(0);
    await stack.waitForRun(eventId, { status: "waiting" });
    const bad = await post(callback.url, "{not json");
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/Body is not valid JSON/);
    expect((await fetch(callback.url)).status).toBe(405);
    expect((await post(callback.url, JSON.stringify({ approved: false }))).status).toBe(200);
    expect((await stack.waitForRun(eventId)).output).toMatchObject({ body: { approved: false } });
  });

  it("a callback timeout over 7 days fails its step with a message that names it", async () => {
    const [eventId] = await stack.send({ name: "review/bad", data: { timeout: "8d" } });
    const run = await stack.waitForRun(eventId!);
    expect(run.status).toBe("failed");
    expect(run.error?.message).toMatch(/step\.createCallback\("link"\): timeout must be between 1ms and 7d/);
  });
});
