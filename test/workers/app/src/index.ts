/**
 * A test-only app Worker (see ../wrangler.toml): one function with steps (one of 1.5 MB), a 2 s
 * sleep, a wait for an event and one that looks back, a step that returns its idempotency key, a wait for a signal, a callback URL, a request the executor makes, a cron trigger, and flow control (a concurrency key, a
 * throttle, a debounce, batches), served on /api/durable by @stepwise/sdk/fetch. Settings (STEPWISE_BASE_URL,
 * STEPWISE_SIGNING_KEY) come from the Worker's `env`, passed by the test as `--var` flags.
 */
import { Stepwise } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/fetch";
import { z } from "zod";
import { HEARTBEAT_CRON } from "./heartbeat.ts";

export const schemas = {
  "worker/order": z.object({ orderId: z.string(), lookupUrl: z.string() }),
  "worker/paid": z.object({ orderId: z.string(), amount: z.number() }),
  "worker/note": z.object({ orderId: z.string(), text: z.string() }),
  "worker/limited": z.object({ group: z.string() }),
  "worker/paced": z.object({ n: z.number() }),
  "worker/edited": z.object({ doc: z.string(), n: z.number() }),
  "worker/usage": z.object({ n: z.number() }),
};

const client = new Stepwise({ id: "worker-app-e2e", schemas });

const order = client.createFunction({ id: "order", triggers: [{ event: "worker/order" }] }, async ({ event, step }) => {
  const reserved = await step.run("reserve", () => `res-${event.data.orderId}`);
  // Over the executor's 1 MB of outputs per invocation: after the sleep it is left out of the
  // request, and this Worker reads it back from the executor Worker before replaying.
  const report = await step.run("report", () => "r".repeat(1_500_000));
  // Date.now() in workerd advances with I/O; each step runs in its own request, so these are
  // the times those requests arrived.
  const sleptFrom = await step.run("before-sleep", () => Date.now());
  await step.sleep("nap", "2s");
  const woke = await step.run("after-sleep", () => Date.now());
  const paid = await step.waitForEvent("payment", { event: "worker/paid", match: "data.orderId", timeout: "1m" });
  // Sent with the order, long before this wait: only a look-back finds it.
  const note = await step.waitForEvent("note", { event: "worker/note", match: "data.orderId", timeout: "10s", lookback: "1m" });
  // Worked out through WebCrypto here (workerd has no node:crypto without nodejs_compat).
  const key = await step.run("key", ({ idempotencyKey }) => idempotencyKey);
  // Sent to this run alone, through the executor Worker's /api/signals.
  const approval = await step.waitForSignal<{ by: string }>("approval", { signal: `approve/${event.data.orderId}`, timeout: "30s" });
  // And a callback URL, minted and taken by the executor Worker.
  const review = await step.createCallback("review-link", { timeout: "30s" });
  const reviewed = await step.waitForCallback("reviewed", review);
  // A request the executor Worker makes (sealed with WebCrypto in workerd until it does).
  const lookup = await step.fetch("lookup", event.data.lookupUrl, { headers: { authorization: "Bearer worker-lookup-key" } });
  const looked = (await lookup.json()) as { auth: string };
  return { reserved, reportLength: report.length, slept: woke - sleptFrom, amount: paid?.data.amount ?? null, note: note?.data.text ?? null, key, approvedBy: approval?.data.by ?? null, reviewed: reviewed?.body ?? null, lookedUpWith: looked.auth };
});

const heartbeat = client.createFunction({ id: "heartbeat", triggers: [{ cron: HEARTBEAT_CRON }] }, async ({ event, step }) => {
  const ranAt = await step.run("beat", () => Date.now());
  return { scheduledAt: event.data.scheduledAt, ranAt };
});

// One step at a time per group: each holds its slot for 300 ms and says when it ran.
const limited = client.createFunction({ id: "limited", triggers: [{ event: "worker/limited" }], concurrency: { limit: 1, key: "event.data.group" } }, async ({ step }) =>
  step.run("hold", async () => {
    const start = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 300));
    return { start, end: Date.now() };
  }),
);

// At most 4 starts a second, one at a time.
const paced = client.createFunction({ id: "paced", triggers: [{ event: "worker/paced" }], throttle: { limit: 4, period: "1s" } }, async ({ step }) =>
  step.run("go", () => Date.now()),
);

// One run per burst of edits, with the last one.
const settled = client.createFunction({ id: "settled", triggers: [{ event: "worker/edited" }], debounce: { period: "1s", key: "event.data.doc" } }, async ({ event, step }) =>
  step.run("index", () => event.data.n),
);

// Three events to a run, or what came within a second.
const tallied = client.createFunction({ id: "tallied", triggers: [{ event: "worker/usage" }], batchEvents: { maxSize: 3, timeout: "1s" } }, async ({ events, step }) =>
  step.run("tally", () => events.map((event) => event.data.n)),
);

const handler = serve({ client, functions: [order, heartbeat, limited, paced, settled, tallied] });

export default {
  async fetch(request: Request, env: object): Promise<Response> {
    const { pathname } = new URL(request.url);
    if (pathname === "/api/durable") return handler(request, env);
    if (pathname === "/health") return new Response("ok\n");
    return new Response("Not found\n", { status: 404 });
  },
};
