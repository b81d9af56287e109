/**
 * OpenTelemetry in the executor, through `@opentelemetry/api` alone (no-ops until the process
 * installs an SDK): each invocation of an app is a client span, in the trace of the run's event
 * (its `traceparent`), whose context goes to the app in the request so the app's spans nest
 * under it; and a run's whole life is a span recorded when it ends (from its start to its end:
 * a run can outlive any process, so no span is held open across them).
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context } from "@opentelemetry/api";
import { formatTraceparent, parseTraceparent, TRACEPARENT_HEADER, type InvokeResponse } from "@stepwise/protocol";
import type { Observer } from "./signals.ts";

const tracer = () => trace.getTracer("@stepwise/engine");

/** The context a span of a run in this trace starts under. */
function parentOf(traceparent: string | undefined): Context {
  const parent = parseTraceparent(traceparent);
  return parent ? trace.setSpanContext(ROOT_CONTEXT, { ...parent, isRemote: true }) : ROOT_CONTEXT;
}

/** Runs `call` (the request to the app, given the headers that carry the span) as the invocation's span. */
export async function traceInvocation(
  run: { id: string; functionId: string; attempt: number; traceparent?: string },
  targetStep: string | undefined,
  call: (headers: Record<string, string>) => Promise<InvokeResponse>,
): Promise<InvokeResponse> {
  const span = tracer().startSpan(
    `stepwise.invoke ${run.functionId}`,
    {
      kind: SpanKind.CLIENT,
      attributes: { "stepwise.run_id": run.id, "stepwise.function_id": run.functionId, "stepwise.attempt": run.attempt, ...(targetStep !== undefined && { "stepwise.step_id": targetStep }) },
    },
    parentOf(run.traceparent),
  );
  const context = span.spanContext();
  try {
    const response = await call(trace.isSpanContextValid(context) ? { [TRACEPARENT_HEADER]: formatTraceparent(context) } : {});
    span.setAttribute("stepwise.answer", response.type);
    if (response.type === "error") span.setStatus({ code: SpanStatusCode.ERROR, message: response.error.message });
    return response;
  } catch (error) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    throw error;
  } finally {
    span.end();
  }
}

/** Records a run's span once it has ended: from its creation to its end, with how it ended. */
export const traceRunEnds: Observer = (signal) => {
  if (signal.type !== "run-ended") return;
  const span = tracer().startSpan(
    `stepwise.run ${signal.functionId}`,
    { kind: SpanKind.INTERNAL, startTime: signal.startedAt, attributes: { "stepwise.run_id": signal.runId, "stepwise.function_id": signal.functionId, "stepwise.status": signal.status } },
    parentOf(signal.traceparent),
  );
  if (signal.status === "failed") span.setStatus({ code: SpanStatusCode.ERROR, message: "the run failed" });
  span.end(signal.endedAt);
};
