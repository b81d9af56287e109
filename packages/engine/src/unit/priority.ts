/**
 * `priority.run`: seconds a run moves ahead in the queue (or back, when negative), evaluated on
 * its event when it starts. The run's first invocation is queued that much earlier than now, so
 * every claim, plain, keyed or from Redis, which takes due jobs in order of due time, takes it
 * first; a negative priority makes the invocation wait that long. Later invocations are not
 * shifted: a continuation never waits in the queue, and a timer is due when it is due.
 */
import { MAX_PRIORITY_SECONDS } from "@stepwise/protocol";
import { evaluateValue } from "../expressions.ts";
import type { EventRecord } from "../records.ts";

/** The run's priority in seconds (clamped to ±600), and what was wrong with the value, if anything. */
export function priorityOf(source: string, event: EventRecord): { seconds: number; problem?: string } {
  const value = evaluateValue(source, { event });
  const number = typeof value === "bigint" ? Number(value) : value;
  if (typeof number !== "number" || !Number.isFinite(number)) {
    return { seconds: 0, problem: `priority.run (${source}) gave ${JSON.stringify(String(value))} for event ${event.id}, not a number of seconds; the run has priority 0` };
  }
  const seconds = Math.max(-MAX_PRIORITY_SECONDS, Math.min(MAX_PRIORITY_SECONDS, Math.round(number)));
  if (seconds !== Math.round(number)) return { seconds, problem: `priority.run (${source}) gave ${number} for event ${event.id}; clamped to ${seconds} seconds` };
  return { seconds };
}
