/**
 * Validation of events sent to the executor (`POST /api/events`, `stepwise.send`): the shape,
 * names, and the payload limit. Every problem is reported with where it is and how to fix it,
 * before anything is stored.
 */
import { newId } from "@stepwise/protocol";
import { z } from "zod";
import { InputError } from "./errors.ts";
import { formatBytes, jsonBytes, type Limits } from "./limits.ts";
import type { EventRecord } from "./records.ts";

const EventInputSchema = z.object({
  name: z.string({ error: "name must be a string, e.g. \"order/created\"" }).min(1, "name must not be empty"),
  data: z.unknown().optional(),
  id: z.string().min(1, "id, when given, must not be empty").max(256).optional(),
  ts: z.number().int().nonnegative().optional(),
});

const EventBatchSchema = z.array(EventInputSchema).min(1, "send at least one event");

/** Events the executor generates itself; users may not send them. */
const RESERVED_PREFIX = "stepwise/";

export function parseEvents(body: unknown, limits: Limits, now = Date.now()): EventRecord[] {
  // One schema per shape (not a union), so the error points at the field that is wrong.
  const parsed = Array.isArray(body) ? EventBatchSchema.safeParse(body) : EventInputSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join(".")}` : "";
    throw new InputError(
      `Invalid event${where}: ${issue?.message ?? "malformed"}. Expected { name, data?, id?, ts? } or an array of them.`,
    );
  }
  const inputs = Array.isArray(parsed.data) ? parsed.data : [parsed.data];
  return inputs.map((input, index) => {
    const label = inputs.length > 1 ? `event ${index} (${input.name})` : `event ${input.name}`;
    if (input.name.startsWith(RESERVED_PREFIX)) {
      throw new InputError(`Invalid ${label}: names starting with "${RESERVED_PREFIX}" are reserved for the executor`);
    }
    if (input.data !== undefined && (typeof input.data !== "object" || input.data === null || Array.isArray(input.data))) {
      throw new InputError(`Invalid ${label}: data must be a JSON object`);
    }
    const event: EventRecord = { id: input.id ?? newId(now), name: input.name, data: input.data ?? {}, ts: input.ts ?? now };
    const bytes = jsonBytes(event);
    if (bytes > limits.maxEventBytes) {
      throw new InputError(
        `Payload too large: ${label} is ${formatBytes(bytes)}; the limit is ${formatBytes(limits.maxEventBytes)}. ` +
          `Send a reference (an ID or URL) instead of the data itself.`,
        413,
      );
    }
    return event;
  });
}
