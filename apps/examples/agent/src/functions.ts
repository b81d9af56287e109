/**
 * The research agent: a model plans three searches, each search is a step (a tool call whose
 * idempotency key makes a repeat harmless), a person approves the findings through a callback
 * URL, and the model writes the report. Model calls are made by the executor (`step.ai.infer`):
 * the app is not invoked while the model thinks, and a crash never pays for a finished call
 * twice. Progress goes to the run's live stream (`publish`) for the page to show.
 *
 * The model is a real provider when OPENAI_API_KEY is set (OPENAI_BASE_URL for any compatible
 * one, AGENT_MODEL for the model), else the local test model (`test-model.ts`) at
 * AGENT_TEST_MODEL_URL; searches go to AGENT_TOOLS_URL (by default the same local server).
 */
import { Stepwise } from "@stepwise/sdk";
import { z } from "zod";
import { PLAN_PROMPT, REPORT_PROMPT } from "./test-model.ts";

export const stepwise = new Stepwise({
  id: "agent",
  schemas: { "research/asked": z.object({ topic: z.string().min(1).max(200) }) },
});

/** Where the local test model listens when no provider is configured. */
export const DEFAULT_TEST_MODEL_URL = "http://127.0.0.1:3999";

interface ChatCompletion {
  choices: Array<{ message: { content: string } }>;
}

function model() {
  if (process.env.OPENAI_API_KEY) return { provider: "openai" as const, model: process.env.AGENT_MODEL ?? "gpt-4o-mini" };
  return { provider: { url: `${process.env.AGENT_TEST_MODEL_URL ?? DEFAULT_TEST_MODEL_URL}/v1/chat/completions` }, model: "stepwise-test-model" };
}

/** The search tool: any API that takes an idempotency key would do. */
async function search(query: string, idempotencyKey: string): Promise<string> {
  const base = process.env.AGENT_TOOLS_URL ?? process.env.AGENT_TEST_MODEL_URL ?? DEFAULT_TEST_MODEL_URL;
  const response = await fetch(`${base}/tools/search`, {
    method: "POST",
    headers: { "content-type": "application/json", "idempotency-key": idempotencyKey },
    body: JSON.stringify({ query }),
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`search answered ${response.status}`);
  const { results } = (await response.json()) as { results: string[] };
  return results[0] ?? `nothing found for ${query}`;
}

/** The queries in the model's plan; a plan that is not what was asked for fails the run clearly. */
function queriesOf(plan: ChatCompletion): string[] {
  const text = plan.choices[0]?.message.content ?? "";
  const queries = (JSON.parse(text.slice(text.indexOf("{"), text.lastIndexOf("}") + 1)) as { queries?: unknown }).queries;
  if (!Array.isArray(queries) || queries.length === 0) throw new Error(`the plan has no queries: ${text.slice(0, 200)}`);
  return queries.slice(0, 5).map(String);
}

/** Whether a person approved: the page posts a form (`approved=true`), a script may post JSON. */
function approved(body: unknown): boolean {
  if (typeof body === "string") return new URLSearchParams(body).get("approved") === "true";
  return (body as { approved?: unknown } | null)?.approved === true;
}

export const research = stepwise.createFunction({ id: "research", triggers: [{ event: "research/asked" }], retries: 5 }, async ({ event, step, publish }) => {
  const { topic } = event.data;
  await publish("status", "planning");
  const plan = await step.ai.infer<ChatCompletion>({ id: "plan", retries: 5 }, { ...model(), body: { messages: [{ role: "system", content: PLAN_PROMPT }, { role: "user", content: topic }] } });
  const queries = queriesOf(plan as ChatCompletion);

  const findings: string[] = [];
  for (const [index, query] of queries.entries()) {
    findings.push(await step.run(`search-${index + 1}`, ({ idempotencyKey }) => search(query, idempotencyKey)));
    await publish("progress", { searched: index + 1, of: queries.length, query });
  }

  const approval = await step.createCallback("approval-link", { timeout: "1d" });
  // In a step, so the person is asked once (a real agent would email the link).
  await step.run("ask-for-approval", () => publish("approval", { url: approval.url, findings }));
  const answer = await step.waitForCallback("approval", approval);
  if (!answer || !approved(answer.body)) return { topic, status: answer ? "rejected" : "no answer in time", findings };

  await publish("status", "writing the report");
  const report = await step.ai.infer<ChatCompletion>(
    { id: "report", retries: 5 },
    { ...model(), body: { messages: [{ role: "system", content: REPORT_PROMPT }, { role: "user", content: [topic, ...findings].join("\n") }] } },
  );
  return { topic, status: "done", report: (report as ChatCompletion).choices[0]?.message.content ?? "", findings };
});

export const functions = [research];
