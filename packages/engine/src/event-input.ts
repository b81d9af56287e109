/**
 * Validation of events, in one place for every way in: `POST /api/events` (and `stepwise.send`)
 * and `step.sendEvent` in a function. The shape and rules are the protocol's (shared with the
 * SDK); the size limit is the executor's. Every problem is reported with where it is and how to
 * fix it, before anything is stored.
 */
import { EventInputSchema, eventProblem, newId, SIGNAL_EVENT, signalEventId, SignalInputSchema } from "@stepwise/protocol";
import { z } from "zod";
import { InputError } from "./errors.ts";
import { formatBytes, jsonBytes, type Limits } from "./limits.ts";
import type { EventRecord } from "./records.ts";

const EventBatchSchema = z.array(EventInputSchema).min(1, "send at least one event");

/** Events as the API receives them: one event or an array. Throws {@link InputError} (400/413). */
export function parseEvents(body: unknown, limits: Limits, now = Date.now()): EventRecord[] {
  if (Array.isArray(body) && body.length > limits.maxEventsPerRequest) {
    throw new InputError(`Too many events: ${body.length} in one request; the limit is ${limits.maxEventsPerRequest}. Send them in several requests.`, 413);
  }
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
  return toEvents(inputs, limits, now, (index) => (inputs.length > 1 ? `event ${index} (${inputs[index]!.name})` : `event ${inputs[index]!.name}`));
}

/**
 * Events a function sends (`step.sendEvent`): the same rules, and IDs derived from the run and
 * step (`derivedId(index)`) where the function gave none.
 */
export function parseSentEvents(events: readonly unknown[], limits: Limits, now: number, derivedId: (index: number) => string): EventRecord[] {
  if (events.length > limits.maxEventsPerRequest) {
    throw new InputError(`Too many events: ${events.length} in one step; the limit is ${limits.maxEventsPerRequest}. Send them in several steps.`);
  }
  const inputs = events.map((event, index) => {
    const parsed = EventInputSchema.safeParse(event);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue && issue.path.length > 0 ? ` at ${issue.path.join(".")}` : "";
      throw new InputError(`Invalid event ${index}${where}: ${issue?.message ?? "malformed"}`);
    }
    const problem = eventProblem(parsed.data);
    if (problem) throw new InputError(`Invalid event ${index} (${parsed.data.name}): ${problem.message}`);
    return { ...parsed.data, id: parsed.data.id ?? derivedId(index) };
  });
  return toEvents(inputs, limits, now, (index) => `event ${index} (${inputs[index]!.name})`, { derived: true });
}

/**
 * A signal as `POST /api/signals` receives it, as the event it is stored as (`data` is
 * `{ signal, data }`, the ID derived from the signal's), and its ID. Throws {@link InputError} (400/413).
 */
export function parseSignal(body: unknown, limits: Limits, now = Date.now()): { event: EventRecord; signalId: string } {
  const parsed = SignalInputSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join(".")}` : "";
    throw new InputError(`Invalid signal${where}: ${issue?.message ?? "malformed"}. Expected { signal, data?, id? }.`);
  }
  const { signal, data, id } = parsed.data;
  if (id !== undefined) {
    const problem = eventProblem({ name: "signal", id });
    if (problem) throw new InputError(`Invalid signal "${signal}": ${problem.message}`);
  }
  const signalId = id ?? newId(now);
  const event: EventRecord = { id: signalEventId(signalId), name: SIGNAL_EVENT, data: { signal, data: data ?? null }, ts: now };
  checkStorable(event, `signal "${signal}"`, limits);
  return { event, signalId };
}

function toEvents(
  inputs: Array<z.infer<typeof EventInputSchema>>,
  limits: Limits,
  now: number,
  label: (index: number) => string,
  options: { derived?: boolean } = {},
): EventRecord[] {
  const seen = new Map<string, number>();
  return inputs.map((input, index) => {
    // Sent events were checked before their IDs were derived (a derived ID is the executor's to use).
    const problem = options.derived ? null : eventProblem(input);
    if (problem) throw new InputError(`Invalid ${label(index)}: ${problem.message}`);
    const event: EventRecord = { id: input.id ?? newId(now), name: input.name, data: input.data ?? {}, ts: input.ts ?? now };
    const first = seen.get(event.id);
    if (first !== undefined) {
      throw new InputError(`Invalid ${label(index)}: its id "${event.id}" is also the id of event ${first}; each event needs its own id`);
    }
    seen.set(event.id, index);
    checkStorable(event, label(index), limits);
    return event;
  });
}

/** Refuses an event whose data cannot be stored as JSON, or is over the size limit (413). */
export function checkStorable(event: EventRecord, label: string, limits: Limits): void {
  let bytes: number;
  try {
    bytes = jsonBytes(event);
  } catch (error) {
    throw new InputError(`Invalid ${label}: data cannot be stored: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (bytes > limits.maxEventBytes) {
    throw new InputError(
      `Payload too large: ${label} is ${formatBytes(bytes)}; the limit is ${formatBytes(limits.maxEventBytes)}. ` +
        `Send a reference (an ID or URL) instead of the data itself.`,
      413,
    );
  }
}
