/**
 * `step.ai.infer` and `step.ai.wrap`: a model call made by the executor (OpenAI-compatible and
 * Anthropic shapes, against a local test model) or by the app's own SDK call, each recording the
 * model and the tokens it spent, which the run API shows per step and adds up per run.
 */
import { createServer, type Server } from "node:http";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const KEY = "sk-local-test-model-key";

/** A local model: OpenAI's chat completions and Anthropic's messages, counting tokens as words. */
class TestModel {
  server!: Server;
  url = "";
  calls: Array<{ path: string; authorization?: string; apiKey?: string; body: { model: string; messages: Array<{ content: string }> } }> = [];

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let text = "";
      req.on("data", (chunk) => (text += chunk));
      req.on("end", () => {
        const body = JSON.parse(text) as { model: string; messages: Array<{ content: string }> };
        this.calls.push({ path: req.url ?? "", authorization: req.headers.authorization, apiKey: req.headers["x-api-key"] as string | undefined, body });
        const prompt = body.messages.map((m) => m.content).join(" ");
        const words = prompt.split(/\s+/).filter(Boolean).length;
        if (body.model === "refuses") return res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "model refuses: prompt too long" } }));
        const reply = `echo: ${prompt}`;
        if (req.url === "/v1/messages") {
          return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ model: body.model, content: [{ type: "text", text: reply }], usage: { input_tokens: words, output_tokens: words + 1 } }));
        }
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ model: body.model, choices: [{ message: { role: "assistant", content: reply } }], usage: { prompt_tokens: words, completion_tokens: words + 1, total_tokens: 2 * words + 1 } }));
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }
}

const client = new Stepwise({ id: "ai-calls", dev: true, schemas: { "ai/ask": z.object({ question: z.string(), model: z.string() }), "ai/anthropic": z.object({ question: z.string() }), "ai/unchecked": z.object({}) } });

const ask = client.createFunction({ id: "ask", triggers: [{ event: "ai/ask" }] }, async ({ event, step }) => {
  const answer = await step.ai.infer<{ choices: Array<{ message: { content: string } }> }>("answer", {
    provider: "openai",
    model: event.data.model,
    body: { messages: [{ role: "user", content: event.data.question }] },
  });
  // A call made by the app's own SDK, its result reporting tokens the AI SDK's way.
  const summary = await step.ai.wrap("summarize", async (text: string) => ({ text: text.toUpperCase(), usage: { inputTokens: 7, outputTokens: 3 }, response: { modelId: "local-summarizer" } }), answer.choices[0]!.message.content);
  // Checkpointed (the default): the wrapped call's result and tokens are committed before this step runs.
  await step.run("file", () => summary.text.length);
  return { answer: answer.choices[0]!.message.content, summary: summary.text };
});

/** The same wrapped call with checkpointing off: its tokens come with the invocation's answer. */
const unchecked = client.createFunction({ id: "unchecked", triggers: [{ event: "ai/unchecked" }], checkpointing: false }, async ({ step }) => {
  const result = await step.ai.wrap("generate", () => ({ text: "ok", usage: { promptTokens: 2, completionTokens: 9 } }));
  await step.run("file", () => result.text);
  return result.text;
});

const anthropic = client.createFunction({ id: "anthropic", triggers: [{ event: "ai/anthropic" }] }, async ({ event, step }) => {
  const answer = await step.ai.infer<{ content: Array<{ text: string }> }>("answer", {
    provider: "anthropic",
    model: "local-claude",
    body: { max_tokens: 100, messages: [{ role: "user", content: event.data.question }] },
  });
  return answer.content[0]!.text;
});

describe.each(STORE_KINDS)("model calls as steps on %s", (store) => {
  let stack: Stack;
  const model = new TestModel();
  const saved = { ...process.env };
  beforeAll(async () => {
    await model.start();
    // The app's environment names the provider, as in production.
    Object.assign(process.env, { OPENAI_BASE_URL: `${model.url}/v1`, OPENAI_API_KEY: KEY, ANTHROPIC_BASE_URL: model.url, ANTHROPIC_API_KEY: KEY });
    stack = await startStack({ store, client, functions: [ask, anthropic, unchecked] });
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
    await new Promise<void>((resolve) => model.server.close(() => resolve()));
    for (const name of ["OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"]) if (saved[name] === undefined) delete process.env[name];
  });

  it("infer calls the model from the executor and records its tokens; wrap records an SDK call's; the run adds them up", async () => {
    const [eventId] = await stack.send({ name: "ai/ask", data: { question: "what is durable execution", model: "local-gpt" } });
    const run = await stack.waitForRun(eventId!);
    expect(run.output).toEqual({ answer: "echo: what is durable execution", summary: "ECHO: WHAT IS DURABLE EXECUTION" });
    const view = await stack.getRun(run.id);
    const byId = new Map(view.steps.map((step) => [step.id, step]));
    expect(byId.get("answer")).toMatchObject({ kind: "ai", usage: { model: "local-gpt", inputTokens: 4, outputTokens: 5 } });
    expect(byId.get("summarize")).toMatchObject({ kind: "run", usage: { model: "local-summarizer", inputTokens: 7, outputTokens: 3 } });
    expect(view.usage).toEqual({ inputTokens: 11, outputTokens: 8 });
    const call = model.calls.find((c) => c.body.messages[0]?.content === "what is durable execution")!;
    expect(call).toMatchObject({ path: "/v1/chat/completions", authorization: `Bearer ${KEY}`, body: { model: "local-gpt" } });
    // The key went to the model, sealed in the store on the way, and is not kept.
    expect(JSON.stringify(view)).not.toContain(KEY);
  });

  it("a wrapped call's tokens are recorded with checkpointing off too (the older AI SDK's naming)", async () => {
    const [eventId] = await stack.send({ name: "ai/unchecked", data: {} });
    const run = await stack.waitForRun(eventId!);
    expect((await stack.getRun(run.id)).steps.find((step) => step.id === "generate")?.usage).toEqual({ inputTokens: 2, outputTokens: 9 });
  });

  it("speaks Anthropic's messages API with its headers", async () => {
    const [eventId] = await stack.send({ name: "ai/anthropic", data: { question: "hello there" } });
    const run = await stack.waitForRun(eventId!);
    expect(run.output).toBe("echo: hello there");
    expect((await stack.getRun(run.id)).usage).toEqual({ inputTokens: 2, outputTokens: 3 });
    expect(model.calls.find((c) => c.path === "/v1/messages" && c.body.messages[0]?.content === "hello there")).toMatchObject({ apiKey: KEY });
  });

  it("a provider's error status fails the step with the provider's message, without retrying", async () => {
    const before = model.calls.filter((c) => c.body.model === "refuses").length;
    const [eventId] = await stack.send({ name: "ai/ask", data: { question: "too long", model: "refuses" } });
    const run = await stack.waitForRun(eventId!);
    expect(run.status).toBe("failed");
    expect(run.error?.message).toMatch(/step\.ai\.infer "answer": the provider answered 400: model refuses: prompt too long/);
    expect(model.calls.filter((c) => c.body.model === "refuses").length - before).toBe(1);
  });
});

describe("a model call without its key (PGlite)", () => {
  const bare = new Stepwise({ id: "ai-bare", dev: true, schemas: { "bare/ask": z.object({}) } });
  const fn = bare.createFunction({ id: "ask", triggers: [{ event: "bare/ask" }] }, async ({ step }) =>
    step.ai.infer("answer", { provider: "anthropic", model: "m", body: { messages: [] } }),
  );
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store: "pglite", client: bare, functions: [fn] });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("fails the step with a message naming the variable to set", async () => {
    const key = process.env.ANTHROPIC_API_KEY;
    delete process.env.ANTHROPIC_API_KEY;
    try {
      const [eventId] = await stack.send({ name: "bare/ask", data: {} });
      const run = await stack.waitForRun(eventId!);
      expect(run.status).toBe("failed");
      expect(run.error?.message).toMatch(/step\.ai\.infer\("answer"\): set ANTHROPIC_API_KEY in the app's environment/);
    } finally {
      if (key !== undefined) process.env.ANTHROPIC_API_KEY = key;
    }
  });
});
