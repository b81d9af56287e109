/**
 * OpenTelemetry in the app, through `@opentelemetry/api` alone (no-ops until the app installs
 * an SDK): `send()` carries the active trace to the executor, an invocation is a span under the
 * executor's span for it, and each step's code runs in a span of its own, active while it runs,
 * so what the step's code traces nests under it.
 */
import { context as contexts, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span } from "@opentelemetry/api";
import { formatTraceparent, parseTraceparent, TRACEPARENT_HEADER } from "@stepwise/protocol";

const tracer = () => trace.getTracer("@stepwise/sdk");

/** The active span's context as a `traceparent` header, for a request to the executor. */
export function traceHeaders(): Record<string, string> {
  const span = trace.getSpanContext(contexts.active());
  return span && trace.isSpanContextValid(span) ? { [TRACEPARENT_HEADER]: formatTraceparent(span) } : {};
}

/** Runs an invocation of `functionId` as a span under the executor's (from its `traceparent`); `work` gets the span's context. */
export async function traceInvocation<T extends { status: number }>(
  traceparent: string | undefined,
  attributes: { functionId: string; runId: string; attempt: number },
  work: (parent: Context) => Promise<T>,
): Promise<T> {
  const remote = parseTraceparent(traceparent);
  const parent = remote ? trace.setSpanContext(ROOT_CONTEXT, { ...remote, isRemote: true }) : contexts.active();
  const span = tracer().startSpan(
    `stepwise.invocation ${attributes.functionId}`,
    { kind: SpanKind.SERVER, attributes: { "stepwise.function_id": attributes.functionId, "stepwise.run_id": attributes.runId, "stepwise.attempt": attributes.attempt } },
    parent,
  );
  try {
    const result = await contexts.with(trace.setSpan(parent, span), () => work(trace.setSpan(parent, span)));
    if (result.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: `answered ${result.status}` });
    return result;
  } catch (error) {
    failed(span, error);
    throw error;
  } finally {
    span.end();
  }
}

/** Runs a step's code in a span of its own under `parent`, active while it runs. */
export async function traceStep<T>(parent: Context | undefined, step: { id: string; name: string }, fn: () => T | Promise<T>): Promise<T> {
  const base = parent ?? contexts.active();
  const span = tracer().startSpan(`stepwise.step ${step.name}`, { attributes: { "stepwise.step_id": step.id } }, base);
  try {
    return await contexts.with(trace.setSpan(base, span), fn);
  } catch (error) {
    failed(span, error);
    throw error;
  } finally {
    span.end();
  }
}

/** Marks the span failed; never throws (a thrown value may not even turn into a string), so the step's own error is what the run sees. */
function failed(span: Span, error: unknown): void {
  try {
    const message = error instanceof Error ? error.message : String(error);
    span.recordException(error instanceof Error ? error : message);
    span.setStatus({ code: SpanStatusCode.ERROR, message });
  } catch {
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
}
