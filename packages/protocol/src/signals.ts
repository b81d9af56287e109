/**
 * Signals: a message addressed to the one run waiting for it by name (`step.waitForSignal`),
 * sent with `POST /api/signals` or `stepwise.sendSignal()`. A signal is stored as an event of
 * the executor's own name ({@link SIGNAL_EVENT}), and only in the transaction that resumes its
 * run: one nobody waits for is refused (404), never kept for a wait that might come later.
 */
import { z } from "zod";
import { DERIVED_ID_PREFIX, MAX_EVENT_ID_LENGTH } from "./events.ts";
import { storableText } from "./text.ts";

/** The executor's event a delivered signal is stored as: `data` is `{ signal, data }`. */
export const SIGNAL_EVENT = "stepwise/signal";
/** Where signals are sent (event key). */
export const SIGNALS_ROUTE = "/api/signals";
/** The longest signal name. */
export const MAX_SIGNAL_LENGTH = 256;
/** The `code` of the 404 that says no run waited for a signal (any other 404 is not that). */
export const NO_WAITING_RUN = "no-waiting-run";

/**
 * The ID a signal is stored under: derived from its own ID, in the executor's namespace, so a
 * signal's ID and an event's never meet (a signal "approval-42" beside an event "approval-42").
 */
export const signalEventId = (signalId: string) => `${DERIVED_ID_PREFIX}signal:${signalId}`;

/** A signal's name: what `step.waitForSignal` and the sender agree on, e.g. `approval/<requestId>`. */
export const SignalNameSchema = storableText("signal", ', e.g. "approval/42"')
  .min(1, 'signal must not be empty, e.g. "approval/42"')
  .max(MAX_SIGNAL_LENGTH, `signal must be at most ${MAX_SIGNAL_LENGTH} characters`);

/** What a wait does when another run already waits for its signal: fail its step, or take the signal over. */
export const SignalConflictSchema = z.enum(["fail", "replace"]);
export type SignalConflict = z.infer<typeof SignalConflictSchema>;

/** The body of `POST /api/signals`. */
export const SignalInputSchema = z
  .object({
    signal: SignalNameSchema,
    /** Any JSON value; the waiting step resolves to `{ signal, data }`. */
    data: z.unknown().optional(),
    /**
     * Makes the send idempotent: a signal with an ID already delivered is not delivered again
     * (the answer says `duplicate`), so a sender may retry after a lost answer. Signal IDs are
     * their own: an event with the same ID is another thing.
     */
    id: storableText("id")
      .min(1, "id, when given, must not be empty")
      .max(MAX_EVENT_ID_LENGTH, `id must be at most ${MAX_EVENT_ID_LENGTH} characters`)
      .optional(),
  })
  .strict();
export type SignalInput = z.infer<typeof SignalInputSchema>;

/** The answer of `POST /api/signals` (HTTP 200). */
export const SignalSentSchema = z.object({
  /** The signal's ID: the sender's, or one the executor gave it. */
  id: z.string(),
  /** The run it resumed; absent for a duplicate. */
  runId: z.string().optional(),
  /** Its waiting step. */
  stepId: z.string().optional(),
  /** True when a signal with this ID was delivered before: nothing happened now. */
  duplicate: z.boolean().optional(),
});
export type SignalSent = z.infer<typeof SignalSentSchema>;
