/**
 * Checks events against the client's schemas before anything leaves the app, so a bad payload
 * fails at the line that sent it instead of inside some function later.
 */
import { EventInputSchema, eventProblem } from "@stepwise/protocol";
import type { z } from "zod";
import { StepwiseValidationError, type ValidationIssue } from "./errors.ts";
import type { EventSchemas } from "./types.ts";

/** An event ready for the wire. */
export interface OutgoingEvent {
  name: string;
  data: unknown;
  id?: string;
  ts?: number;
}

/**
 * Validates each event with its schema (when it has one) and returns them as sent: the data is
 * the schema's parsed output, so defaults apply and handlers see what their types promise.
 * Throws {@link StepwiseValidationError} for the first invalid event.
 */
export function validateEvents(schemas: EventSchemas | undefined, events: readonly unknown[]): OutgoingEvent[] {
  return events.map((event) => validateEvent(schemas, event));
}

function validateEvent(schemas: EventSchemas | undefined, event: unknown): OutgoingEvent {
  if (typeof event !== "object" || event === null) {
    throw new StepwiseValidationError(String(event), [{ path: "event", message: "expected an object with a name" }]);
  }
  const { name, data, id, ts } = event as Record<string, unknown>;
  if (typeof name !== "string" || name === "") {
    throw new StepwiseValidationError(String(name), [{ path: "name", message: "expected a non-empty string" }]);
  }
  // The executor's own rules (names, ids, ts, reserved prefix), checked here first for a typed error.
  const shape = EventInputSchema.safeParse({ name, id, ts, data: data ?? {} });
  if (!shape.success) {
    throw new StepwiseValidationError(name, shape.error.issues.map((issue) => ({ path: issue.path.join(".") || "event", message: issue.message })));
  }
  const problem = eventProblem({ name, data: data ?? {}, id: shape.data.id });
  if (problem) throw new StepwiseValidationError(name, [{ path: problem.field, message: problem.message }]);
  const schema = schemas && Object.hasOwn(schemas, name) ? schemas[name] : undefined;
  const outgoing: OutgoingEvent = { name, data: schema ? parseData(schema, name, data) : (data ?? {}) };
  if (shape.data.id !== undefined) outgoing.id = shape.data.id;
  if (shape.data.ts !== undefined) outgoing.ts = shape.data.ts;
  return outgoing;
}

function parseData(schema: z.ZodType, name: string, data: unknown): unknown {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  const issues: ValidationIssue[] = result.error.issues.map((issue) => ({
    path: ["data", ...issue.path.map(String)].join("."),
    message: issue.message,
  }));
  throw new StepwiseValidationError(name, issues);
}
