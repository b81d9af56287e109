/**
 * `GET /api/runs/:id/stream`: a run's transitions as server-sent events while they happen (any
 * executor's: it reads the record), ending when the run does. Over real HTTP, on every store.
 */
import type { RunView, StepView } from "@stepwise/engine";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, STORE_KINDS, type Stack } from "../support/stack.ts";

const client = new Stepwise({ id: "streams", dev: true, schemas: { "flow/start": z.object({ tag: z.string() }), "flow/go": z.object({ tag: z.string() }) } });
const flow = client.createFunction({ id: "flow", triggers: [{ event: "flow/start" }] }, async ({ event, step }) => {
  await step.run("first", () => 1);
  await step.waitForEvent("go", { event: "flow/go", match: "data.tag", timeout: "1h" });
  return step.run("second", () => `done ${event.data.tag}`);
});

interface Message {
  event: string;
  id: string;
  data: unknown;
}

/** Reads server-sent events from `url` until the stream ends; `onMessage` sees each as it comes. */
async function readStream(url: string, onMessage: (message: Message) => void | Promise<void>): Promise<Message[]> {
  const response = await fetch(url);
  expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
  const messages: Message[] = [];
  const decoder = new TextDecoder();
  let buffer = "";
  const reader = response.body!.getReader();
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    buffer += decoder.decode(read.value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (block.startsWith(":")) continue;
      const fields = Object.fromEntries(block.split("\n").map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 2)]));
      const message = { event: fields.event ?? "message", id: fields.id ?? "", data: JSON.parse(fields.data ?? "null") };
      messages.push(message);
      await onMessage(message);
    }
  }
  return messages;
}

describe.each(STORE_KINDS)("a run's stream on %s", (kind) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ store: kind, client, functions: [flow] });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("sends the run, then each step and the run as they move, and ends with the run", async () => {
    const [eventId] = await stack.send({ name: "flow/start", data: { tag: kind } });
    const waiting = await stack.waitForRun(eventId!, { status: "waiting" });
    const messages = await readStream(`${stack.executor.url}/api/runs/${waiting.id}/stream`, async (message) => {
      // Once the stream has shown the run waiting, another executor's kind of change: an event.
      if (message.event === "snapshot") await stack.send({ name: "flow/go", data: { tag: kind } });
    });

    expect(messages[0]!.event).toBe("snapshot");
    expect((messages[0]!.data as RunView).steps.map((step) => [step.id, step.status])).toEqual([
      ["first", "completed"],
      ["go", "waiting"],
    ]);
    const steps = messages.filter((m) => m.event === "step").map((m) => m.data as StepView);
    expect(steps.filter((step) => step.status === "completed").map((step) => step.id)).toEqual(["go", "second"]);
    expect(messages.at(-1)).toMatchObject({ event: "end", data: { id: waiting.id, status: "completed", output: `done ${kind}` } });
    expect(messages.filter((m) => m.event === "run").at(-1)?.data).toMatchObject({ status: "completed" });
    // IDs are the run's versions: they only grow.
    const versions = messages.map((m) => Number(m.id));
    expect([...versions].sort((a, b) => a - b)).toEqual(versions);
  });

  it("shows a pause, and answers 404 for a run that does not exist", async () => {
    const [eventId] = await stack.send({ name: "flow/start", data: { tag: `${kind}-paused` } });
    const waiting = await stack.waitForRun(eventId!, { status: "waiting" });
    const seen: Message[] = [];
    await readStream(`${stack.executor.url}/api/runs/${waiting.id}/stream`, async (message) => {
      seen.push(message);
      if (message.event === "snapshot") await fetch(`${stack.executor.url}/api/runs/${waiting.id}/pause`, { method: "POST" });
      if (message.event === "run") await fetch(`${stack.executor.url}/api/runs/${waiting.id}/cancel`, { method: "POST" });
    });
    expect(seen.find((m) => m.event === "run")?.data).toMatchObject({ status: "waiting", paused: { by: "operator" } });
    expect(seen.at(-1)).toMatchObject({ event: "end", data: { status: "cancelled" } });
    const missing = await fetch(`${stack.executor.url}/api/runs/no-such-run/stream`);
    expect(missing.status).toBe(404);
  });
});
