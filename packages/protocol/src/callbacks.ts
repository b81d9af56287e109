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
import { constantTimeEqual, hmacSha256Hex } from "./signing.ts";

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

/** Signed text is prefixed with this, so no other signature of the key can pass for a callback's. */
const PURPOSE = "stepwise-callback\n";

/** The token of a callback URL: its claims as base64url JSON, a dot, and their HMAC-SHA256 (hex). */
export async function mintCallbackToken(signingKey: string, claims: CallbackClaims): Promise<string> {
  const payload = toBase64Url(JSON.stringify({ a: claims.appId, r: claims.runId, s: claims.stepId, e: claims.expiresAt }));
  return `${payload}.${await hmacSha256Hex(signingKey, PURPOSE + payload)}`;
}

/**
 * The claims of `token` once its signature is checked with the keys `keysOf` gives for its app
 * (current and next, during a rotation); `tampered` for one that does not hold together or was
 * not signed by any of them. Expiry is the caller's to judge.
 */
export async function readCallbackToken(token: string, keysOf: (appId: string) => readonly string[]): Promise<CallbackClaims | "tampered"> {
  const [payload, signature, extra] = token.split(".");
  if (!payload || !signature || extra !== undefined || !/^[0-9a-f]{64}$/.test(signature)) return "tampered";
  let parsed: unknown;
  try {
    parsed = JSON.parse(fromBase64Url(payload));
  } catch {
    return "tampered";
  }
  const { a, r, s, e } = (parsed ?? {}) as Record<string, unknown>;
  if (typeof a !== "string" || typeof r !== "string" || typeof s !== "string" || typeof e !== "number") return "tampered";
  let valid = false;
  for (const key of keysOf(a)) if (constantTimeEqual(await hmacSha256Hex(key, PURPOSE + payload), signature)) valid = true;
  return valid ? { appId: a, runId: r, stepId: s, expiresAt: e } : "tampered";
}

function toBase64Url(text: string): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64Url(text: string): string {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new Error("not base64url");
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(binary, (ch) => ch.charCodeAt(0)));
}
