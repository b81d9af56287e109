/**
 * A local stand-in for a model provider and a search API, so the agent runs offline: an
 * OpenAI-compatible `POST /v1/chat/completions` that answers the agent's two prompts (a plan as
 * JSON, then a report) after a delay, as a real model takes time, and `POST /tools/search`. It
 * counts every call, so a test can tell how often a crash made the agent pay twice.
 */
import { createServer, type Server } from "node:http";

export interface TestModelOptions {
  port?: number;
  /** How long the model thinks before it answers (default 250 ms). */
  delayMs?: number;
}

/** One call the server answered (or was answering when the caller went away). */
export interface RecordedCall {
  kind: "model" | "search";
  /** The plan or report of a topic, or the search's idempotency key. */
  label: string;
  startedAt: number;
  endedAt?: number;
}

export interface TestModel {
  url: string;
  calls: RecordedCall[];
  /** Model calls begun and not yet answered. */
  pending(): number;
  close(): Promise<void>;
}

/** The system prompts the agent sends; the test model answers by them. */
export const PLAN_PROMPT = "You plan web research. Answer with JSON only: {\"queries\": [three search queries]}.";
export const REPORT_PROMPT = "You write a short research report from the findings given.";

export async function startTestModel(options: TestModelOptions = {}): Promise<TestModel> {
  const calls: RecordedCall[] = [];
  const delayMs = options.delayMs ?? 250;
  const server: Server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
    } catch {
      return send(response, 400, { error: { message: "the body is not JSON" } });
    }
    if (request.method === "POST" && request.url === "/v1/chat/completions") {
      const messages = (body.messages ?? []) as Array<{ role: string; content: string }>;
      const system = messages.find((m) => m.role === "system")?.content ?? "";
      const user = messages.find((m) => m.role === "user")?.content ?? "";
      const call: RecordedCall = { kind: "model", label: `${system === PLAN_PROMPT ? "plan" : "report"}: ${user.split("\n")[0]}`, startedAt: Date.now() };
      calls.push(call);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      call.endedAt = Date.now();
      const content = system === PLAN_PROMPT ? JSON.stringify({ queries: [`${user} history`, `${user} today`, `${user} open questions`] }) : `Report on ${user.split("\n")[0]}: ${user.split("\n").length - 1} findings, all consistent.`;
      return send(response, 200, {
        id: `chatcmpl-${calls.length}`,
        object: "chat.completion",
        model: String(body.model ?? "stepwise-test-model"),
        choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
        usage: { prompt_tokens: Math.ceil((system.length + user.length) / 4), completion_tokens: Math.ceil(content.length / 4) },
      });
    }
    if (request.method === "POST" && request.url === "/tools/search") {
      const key = String(request.headers["idempotency-key"] ?? "");
      const call: RecordedCall = { kind: "search", label: key, startedAt: Date.now() };
      calls.push(call);
      await new Promise((resolve) => setTimeout(resolve, delayMs / 2));
      call.endedAt = Date.now();
      return send(response, 200, { results: [`A source about ${String(body.query)}`] });
    }
    send(response, 404, { error: { message: `no ${request.method} ${request.url} here` } });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    pending: () => calls.filter((call) => call.kind === "model" && call.endedAt === undefined).length,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function send(response: import("node:http").ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}
