/**
 * Callback URLs: `step.createCallback` gives a run a capability URL, `<executor>/api/callbacks/
 * <token>`, that a person or a third party POSTs to without any key; `step.waitForCallback`
 * resolves to that POST's `{ body, headers }`. The token names the app, run and step and when it
 * expires, signed by the executor with the app's signing key, so it cannot be made up or
 * changed; the first POST is stored as the executor's event {@link CALLBACK_EVENT} under an ID
 * derived from the run and step, so a second POST finds it taken (single use).
 */
import { z } from "zod";
import { MAX_LOOKBACK_MS } from "./wire.ts";
import { mintSignedToken, readSignedToken } from "./tokens.ts";

/** The event a callback's POST is stored as: `data` is `{ callback, body, headers }`. */
export const CALLBACK_EVENT = "stepwise/callback";
/** Where callback URLs point: `POST /api/callbacks/<token>`. */
export const CALLBACKS_ROUTE = "/api/callbacks";
/** The longest a callback URL lives: the executor's default retention of events, which keeps its POST. */
export const MAX_CALLBACK_TIMEOUT_MS = MAX_LOOKBACK_MS;

/** What a callback step resolves to. */
export const CallbackSchema = z.object({
  /** Names the callback for `step.waitForCallback`. */
  id: z.string(),
  /** The capability URL: POST to it (no key needed) before `expiresAt`, once. */
  url: z.string(),
  expiresAt: z.string(),
});
export type Callback = z.infer<typeof CallbackSchema>;

/** What a callback's token says: whose it is and until when. */
export interface CallbackClaims {
  appId: string;
  runId: string;
  stepId: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
}

/** The purpose line of a callback's token: no other token or signature of the key passes for one. */
const PURPOSE = "stepwise-callback";

/** The token of a callback URL (see `tokens.ts`). */
export function mintCallbackToken(signingKey: string, claims: CallbackClaims): Promise<string> {
  return mintSignedToken(PURPOSE, signingKey, { a: claims.appId, r: claims.runId, s: claims.stepId, e: claims.expiresAt });
}

/**
 * The claims of `token` once its signature is checked with the keys `keysOf` gives for its app
 * (current and next, during a rotation); `tampered` for one that does not hold together or was
 * not signed by any of them. Expiry is the caller's to judge.
 */
export async function readCallbackToken(token: string, keysOf: (appId: string) => readonly string[]): Promise<CallbackClaims | "tampered"> {
  const claims = await readSignedToken(PURPOSE, token, ({ a }) => (typeof a === "string" ? keysOf(a) : []));
  const { a, r, s, e } = claims ?? {};
  if (typeof a !== "string" || typeof r !== "string" || typeof s !== "string" || typeof e !== "number") return "tampered";
  return { appId: a, runId: r, stepId: s, expiresAt: e };
}
