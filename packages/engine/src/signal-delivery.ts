/**
 * `POST /api/signals`: a signal resumes the one run waiting for it, or is refused (404) when none
 * does. A run may reach its wait a moment after the signal was sent (a person clicks "approve"
 * while the run is still sending the email), so the sender's request keeps trying for a grace
 * period before it answers 404. Each try is one transaction that stores the signal and resumes
 * the run, or rolls back: nothing is kept for a wait that may never come, so a 404 means the
 * signal had no effect at all, and the sender may simply send it again.
 */
import { NO_WAITING_RUN, type SignalSent } from "@stepwise/protocol";
import { InputError } from "./errors.ts";
import type { EventRecord } from "./records.ts";

/** How long a signal nobody waits for keeps trying before the sender hears 404. */
export const DEFAULT_SIGNAL_GRACE_MS = 5_000;
/** Pauses between tries: short at first (the wait is usually a moment away), then steady. */
const FIRST_PAUSE_MS = 20;
const LONGEST_PAUSE_MS = 250;

/** One try: resumes the waiting run, finds the signal delivered already, or finds no run waiting (and stored nothing). */
export type SignalTry = (event: EventRecord) => Promise<{ runId: string; stepId: string } | "duplicate" | undefined>;

/**
 * Delivers `event` (a parsed signal, `signalId` its own ID) within `graceMs`; an `InputError`
 * (404, code {@link NO_WAITING_RUN}) when no run waited for it. Stops trying once `abort` fires
 * (the sender went away): a signal its sender saw fail is not delivered afterwards.
 */
export async function deliverWithGrace(
  { event, signalId }: { event: EventRecord; signalId: string },
  graceMs: number,
  attempt: SignalTry,
  options: { now?: () => number; abort?: AbortSignal } = {},
): Promise<SignalSent> {
  const now = options.now ?? Date.now;
  const deadline = now() + graceMs;
  const { signal } = event.data as { signal: string };
  for (let pause = FIRST_PAUSE_MS; ; pause = Math.min(pause * 2, LONGEST_PAUSE_MS)) {
    if (options.abort?.aborted) throw new InputError(`The sender of signal "${signal}" went away before a run waited for it; nothing was delivered`, 400);
    const outcome = await attempt(event);
    if (outcome === "duplicate") return { id: signalId, duplicate: true };
    if (outcome) return { id: signalId, runId: outcome.runId, stepId: outcome.stepId };
    const left = deadline - now();
    if (left <= 0) break;
    await pauseFor(Math.min(pause, left), options.abort);
  }
  throw new InputError(
    `No run waits for signal "${signal}": none reached step.waitForSignal("…", { signal: "${signal}" }) within ${graceMs / 1000} s, so nothing was delivered or stored. ` +
      `Check the signal's name, or send it again once the run waits (GET /api/runs shows the run).`,
    404,
    NO_WAITING_RUN,
  );
}

/** Waits `ms`, or less when `abort` fires. */
function pauseFor(ms: number, abort: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    abort?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      abort?.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** Thrown inside a try's transaction when no run waits: the transaction rolls back, and the event with it. */
export class NobodyWaits extends Error {
  override name = "NobodyWaits";
}
