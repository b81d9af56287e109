/**
 * What makes an event acceptable, wherever it comes from: `POST /api/events`, `stepwise.send()`
 * or `step.sendEvent()`. The executor checks every event with these rules (and its size limit)
 * before storing anything; the SDK checks the same rules first, so a bad event fails at the
 * line that sent it with a typed error.
 */
import { z } from "zod";
import { storableText } from "./text.ts";

/** Events named `stepwise/…` are the executor's own (`stepwise/function.failed`, …). */
export const RESERVED_EVENT_PREFIX = "stepwise/";
/**
 * IDs the executor derives for the events it stores itself (a step's sent events, an invoked
 * child's event, a failure event) start with this, and no sender may use it: nobody can claim
 * such an ID before the executor writes it.
 */
export const DERIVED_ID_PREFIX = "stepwise:";

/** The ID the executor derives from a run and what in it caused the event, e.g. `stepwise:<run>:<step>:0`. */
export function derivedEventId(runId: string, ...parts: Array<string | number>): string {
  return [`${DERIVED_ID_PREFIX}${runId}`, ...parts].join(":");
}
export const MAX_EVENT_NAME_LENGTH = 256;
export const MAX_EVENT_ID_LENGTH = 256;

/** One event as a sender gives it; the executor fills in `id` and `ts` when they are missing. */
export const EventInputSchema = z.object({
  name: storableText("name", ', e.g. "order/created"')
    .min(1, 'name must not be empty, e.g. "order/created"')
    .max(MAX_EVENT_NAME_LENGTH, `name must be at most ${MAX_EVENT_NAME_LENGTH} characters`),
  data: z.unknown().optional(),
  id: storableText("id")
    .min(1, "id, when given, must not be empty")
    .max(MAX_EVENT_ID_LENGTH, `id must be at most ${MAX_EVENT_ID_LENGTH} characters`)
    .optional(),
  ts: z
    .number({ error: "ts must be a number of milliseconds since the epoch" })
    .int("ts must be a whole number of milliseconds since the epoch")
    .nonnegative("ts must not be negative")
    .max(Number.MAX_SAFE_INTEGER, "ts is too large")
    .optional(),
});
export type EventInput = z.infer<typeof EventInputSchema>;

/** A rule an event breaks: the field, and a message that says how to fix it. */
export interface EventProblem {
  field: "name" | "id" | "data";
  message: string;
}

/** The rules beyond the shape; null when the event may be sent. */
export function eventProblem(input: { name: string; data?: unknown; id?: string }): EventProblem | null {
  if (input.name.startsWith(RESERVED_EVENT_PREFIX)) {
    return { field: "name", message: `names starting with "${RESERVED_EVENT_PREFIX}" are reserved for the executor` };
  }
  if (input.id?.startsWith(DERIVED_ID_PREFIX)) {
    return { field: "id", message: `ids starting with "${DERIVED_ID_PREFIX}" are reserved for the IDs the executor derives; choose another id` };
  }
  const { data } = input;
  if (data !== undefined && (typeof data !== "object" || data === null || Array.isArray(data))) {
    return { field: "data", message: "data must be a JSON object, e.g. { orderId: 42 }" };
  }
  return null;
}
