/**
 * W3C Trace Context (`traceparent: 00-<trace id>-<parent span id>-<flags>`), read and written
 * by hand so a trace goes from `send()` through the executor to a step's code whether or not
 * each side registered a propagator: only the OpenTelemetry API is needed, and it does nothing
 * until an application installs an SDK.
 */
export const TRACEPARENT_HEADER = "traceparent";

export interface TraceParent {
  traceId: string;
  spanId: string;
  /** Bit 0: sampled. */
  traceFlags: number;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The parent a `traceparent` header names, or undefined for anything else (an all-zero ID included). */
export function parseTraceparent(header: string | null | undefined): TraceParent | undefined {
  const match = header ? TRACEPARENT.exec(header.trim().toLowerCase()) : null;
  if (!match) return undefined;
  const [, traceId, spanId, flags] = match;
  if (/^0+$/.test(traceId!) || /^0+$/.test(spanId!)) return undefined;
  return { traceId: traceId!, spanId: spanId!, traceFlags: parseInt(flags!, 16) };
}

export function formatTraceparent(parent: TraceParent): string {
  return `00-${parent.traceId}-${parent.spanId}-${(parent.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}
