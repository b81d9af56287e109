/**
 * The agent example's app: the agent on /api/durable, and a small page that asks a question,
 * follows the run live (`@stepwise/sdk/realtime`, with a stream token minted here) and approves
 * the findings through the run's callback URL. Without OPENAI_API_KEY it starts the local test
 * model first, so it runs offline.
 *
 *   STEPWISE_DEV=1 npx stepwise dev --app http://127.0.0.1:3001/api/durable   # the executor
 *   STEPWISE_DEV=1 npm start -w @stepwise/example-agent                       # this app, then open http://127.0.0.1:3001
 */
import { fileURLToPath } from "node:url";
import { serve as serveNode } from "@hono/node-server";
import { serve } from "@stepwise/sdk/hono";
import { build } from "esbuild";
import { Hono } from "hono";
import { DEFAULT_TEST_MODEL_URL, functions, stepwise } from "./functions.ts";
import { PAGE } from "./page.ts";
import { startTestModel } from "./test-model.ts";

const port = Number(process.env.PORT ?? 3001);
// Where browsers reach the executor (the stream and the callback URL are the executor's).
const executorUrl = (process.env.STEPWISE_PUBLIC_URL ?? process.env.STEPWISE_BASE_URL ?? "http://127.0.0.1:8288").replace(/\/+$/, "");

if (!process.env.OPENAI_API_KEY && !process.env.AGENT_TEST_MODEL_URL) {
  const model = await startTestModel({ port: Number(new URL(DEFAULT_TEST_MODEL_URL).port) });
  console.log(`no OPENAI_API_KEY: the local test model answers at ${model.url}`);
}

// The realtime client, bundled for the page once at start.
const realtime = await build({ entryPoints: [fileURLToPath(import.meta.resolve("@stepwise/sdk/realtime"))], bundle: true, format: "esm", write: false, minify: true });
const realtimeJs = realtime.outputFiles[0]!.text;

const app = new Hono();
app.on(["GET", "POST", "PUT"], "/api/durable", serve({ client: stepwise, functions }));
app.get("/", (c) => c.html(PAGE));
app.get("/realtime.js", (c) => c.body(realtimeJs, 200, { "content-type": "text/javascript" }));

// Starts a run and hands the page what it needs to follow it: the run's ID and a stream URL.
app.post("/ask", async (c) => {
  const { topic } = (await c.req.json().catch(() => ({}))) as { topic?: unknown };
  if (typeof topic !== "string" || topic.trim() === "" || topic.length > 200) return c.json({ error: "topic: 1 to 200 characters" }, 400);
  const { ids } = await stepwise.send({ name: "research/asked", data: { topic: topic.trim() } });
  const runId = await runOf(ids[0]!);
  if (!runId) return c.json({ error: "the run did not start; is the executor running?" }, 503);
  return c.json({ runId, ...(await stepwise.streamToken(runId, { publicUrl: executorUrl })) });
});

/** The run an event started, from the executor's run API (the API key outside dev mode). */
async function runOf(eventId: string): Promise<string | undefined> {
  const headers: Record<string, string> = process.env.STEPWISE_API_KEY ? { authorization: `Bearer ${process.env.STEPWISE_API_KEY}` } : {};
  for (let tries = 0; tries < 50; tries++) {
    const answer = await fetch(`${process.env.STEPWISE_BASE_URL ?? executorUrl}/api/events/${eventId}/runs`, { headers });
    const { runs } = (await answer.json()) as { runs?: Array<{ id: string }> };
    if (runs?.[0]) return runs[0].id;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return undefined;
}

serveNode({ fetch: app.fetch, port, hostname: "127.0.0.1" }, (info) => {
  console.log(`agent example: open http://127.0.0.1:${info.port} (functions on /api/durable, executor at ${executorUrl})`);
});
