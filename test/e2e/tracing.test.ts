/**
 * OpenTelemetry: with an SDK installed (here an in-memory exporter), a trace goes from the span
 * that called `send()` through the executor's invocation of the app to each step's code, and a
 * run's whole life is a span of that trace; the step's own spans nest under the step. Executor
 * and app share this process, so their spans land in one exporter.
 */
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from "@opentelemetry/sdk-trace";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, type Stack } from "../support/stack.ts";

const exporter = new InMemorySpanExporter();
const client = new Stepwise({ id: "traced", dev: true, schemas: { "order/placed": z.object({ id: z.string() }), "order/confirmed": z.object({ id: z.string() }) } });
const fulfil = client.createFunction({ id: "fulfil", triggers: [{ event: "order/placed" }] }, async ({ event, step }) => {
  const reserved = await step.run("reserve", () => trace.getTracer("shop").startActiveSpan("db.reserve", (span) => (span.end(), `reserved ${event.data.id}`)));
  await step.sleep("settle", 10);
  // The trace an event came with is the executor's: a wait's result is the event as it was sent.
  await step.waitForEvent("confirmed", { event: "order/confirmed", match: "data.id", timeout: "10s" });
  return step.run("ship", () => `${reserved}, shipped`);
});

describe("traces", () => {
  let stack: Stack;
  beforeAll(async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] }));
    stack = await startStack({ store: "pglite", client, functions: [fulfil] });
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
    trace.disable();
    context.disable();
  });

  it("carry the trace from send() through the executor to each step's code", async () => {
    const { traceId, ids } = await trace.getTracer("shop").startActiveSpan("checkout", async (span) => {
      const sent = await client.send({ name: "order/placed", data: { id: "o-7" } });
      await stack.waitForRun(sent.ids[0]!, { status: "waiting" });
      await client.send({ name: "order/confirmed", data: { id: "o-7" } });
      span.end();
      return { traceId: span.spanContext().traceId, ids: sent.ids };
    });
    const run = await stack.waitForRun(ids[0]!);
    expect(run.status).toBe("completed");
    await expect.poll(() => exporter.getFinishedSpans().some((span) => span.name === "stepwise.run traced-fulfil")).toBe(true);

    const spans = exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
    const named = (name: string) => spans.filter((span) => span.name === name);
    const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
    const checkout = named("checkout")[0]!;
    const invokes = named("stepwise.invoke traced-fulfil");
    const invocations = named("stepwise.invocation fulfil");
    expect(invokes.length).toBeGreaterThanOrEqual(2);
    expect(invocations).toHaveLength(invokes.length);
    // The executor's invocation spans hang off the sender's span; the app's off the executor's.
    for (const invoke of invokes) expect(parentOf(invoke)).toBe(checkout.spanContext().spanId);
    for (const invocation of invocations) expect(invokes.map((s) => s.spanContext().spanId)).toContain(parentOf(invocation));
    // Each step's code ran once, in a span under an invocation; what it traced nests under it.
    const [reserve] = named("stepwise.step reserve");
    const [ship] = named("stepwise.step ship");
    expect(named("stepwise.step reserve")).toHaveLength(1);
    expect(invocations.map((s) => s.spanContext().spanId)).toContain(parentOf(reserve!));
    expect(invocations.map((s) => s.spanContext().spanId)).toContain(parentOf(ship!));
    expect(parentOf(named("db.reserve")[0]!)).toBe(reserve!.spanContext().spanId);
    expect(Object.keys(run.steps.find((step) => step.id === "confirmed")?.output as object).sort()).toEqual(["data", "id", "name", "ts"]);
    const runSpan = named("stepwise.run traced-fulfil")[0]!;
    expect(runSpan.attributes).toMatchObject({ "stepwise.run_id": run.id, "stepwise.status": "completed" });
    expect(parentOf(runSpan)).toBe(checkout.spanContext().spanId);
  });
});
