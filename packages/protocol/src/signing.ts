/**
 * Request signing between executor and app: HMAC-SHA256 over `<timestamp>.<raw body>`.
 *
 * Header: `x-stepwise-signature: t=<unix seconds>,s=<hex digest>`. Uses WebCrypto only, so it
 * runs unchanged in Node, Workers, Deno and Bun. Two keys may be valid at once (current and
 * next) so a key can be rotated without downtime.
 */

/** The public key the dev server signs with; apps accept it only in dev mode. */
export const DEV_SIGNING_KEY = "stepwise-dev-signing-key-not-secret";

/** How far a signature's timestamp may be from the verifier's clock. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

const encoder = new TextEncoder();
const keyCache = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keyCache.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    keyCache.set(secret, key);
  }
  return key;
}

function toHex(buffer: ArrayBuffer): string {
  const bytes = new Uint8Array(buffer);
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}

async function digest(secret: string, timestamp: number, body: string): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", await hmacKey(secret), encoder.encode(`${timestamp}.${body}`));
  return toHex(mac);
}

/** Compares in time independent of where the strings differ. */
function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** Signs `body` with `secret`; returns the header value. */
export async function sign(secret: string, body: string, nowMs = Date.now()): Promise<string> {
  const timestamp = Math.floor(nowMs / 1000);
  return `t=${timestamp},s=${await digest(secret, timestamp, body)}`;
}

/** Why a signature was rejected, in words that tell the operator what to fix. */
export type SignatureProblem = "missing" | "malformed" | "stale" | "mismatch";

export type VerifyResult = { ok: true } | { ok: false; problem: SignatureProblem; message: string };

/**
 * Checks a signature header against `body` with any of `secrets` (current, next).
 * Rejects a missing or malformed header, a timestamp outside the tolerance, or a digest that
 * matches none of the keys (a tampered body, or a wrong key).
 */
export async function verify(
  header: string | null | undefined,
  body: string,
  secrets: readonly string[],
  nowMs = Date.now(),
): Promise<VerifyResult> {
  if (!header) {
    return { ok: false, problem: "missing", message: "Missing x-stepwise-signature header: requests must be signed by the executor" };
  }
  const parts = new Map(header.split(",").map((part) => {
    const at = part.indexOf("=");
    return [part.slice(0, at).trim(), part.slice(at + 1).trim()] as const;
  }));
  const timestamp = Number(parts.get("t"));
  const signature = parts.get("s");
  if (!Number.isInteger(timestamp) || !signature) {
    return { ok: false, problem: "malformed", message: "Malformed x-stepwise-signature header: expected t=<unix seconds>,s=<hex>" };
  }
  const skew = Math.abs(nowMs / 1000 - timestamp);
  if (skew > SIGNATURE_TOLERANCE_SECONDS) {
    return {
      ok: false,
      problem: "stale",
      message: `Stale signature: signed ${Math.round(skew)}s away from now, tolerance is ${SIGNATURE_TOLERANCE_SECONDS}s (check the clocks)`,
    };
  }
  for (const secret of secrets) {
    if (constantTimeEqual(await digest(secret, timestamp, body), signature)) return { ok: true };
  }
  return {
    ok: false,
    problem: "mismatch",
    message: "Signature does not match: the body was altered or the signing keys differ (check STEPWISE_SIGNING_KEY)",
  };
}
