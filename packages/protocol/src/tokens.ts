/**
 * Signed tokens: claims as base64url JSON, a dot, and the HMAC-SHA256 (hex) of a purpose line
 * and the claims under an app's signing key. A token carries its own authority (a callback URL,
 * a stream a browser may read), so it is never stored; the purpose line keeps a token minted
 * for one thing from passing for another, or for any other signature of the same key.
 */
import { constantTimeEqual, hmacSha256Hex } from "./signing.ts";

/** Mints a token of `purpose` for `claims` (short keys keep URLs short). */
export async function mintSignedToken(purpose: string, signingKey: string, claims: Record<string, string | number>): Promise<string> {
  const payload = toBase64Url(JSON.stringify(claims));
  return `${payload}.${await hmacSha256Hex(signingKey, `${purpose}\n${payload}`)}`;
}

/**
 * The claims of a token of `purpose` once its signature checks out under one of the keys
 * `keysOf` gives for them (they name their app); null for a token that does not hold together
 * or that none of them signed. What the claims mean, expiry included, is the caller's to judge.
 */
export async function readSignedToken(
  purpose: string,
  token: string,
  keysOf: (claims: Record<string, unknown>) => readonly string[],
): Promise<Record<string, unknown> | null> {
  const [payload, signature, extra] = token.split(".");
  if (!payload || !signature || extra !== undefined || !/^[0-9a-f]{64}$/.test(signature)) return null;
  let claims: unknown;
  try {
    claims = JSON.parse(fromBase64Url(payload));
  } catch {
    return null;
  }
  if (typeof claims !== "object" || claims === null || Array.isArray(claims)) return null;
  let valid = false;
  for (const key of keysOf(claims as Record<string, unknown>)) if (constantTimeEqual(await hmacSha256Hex(key, `${purpose}\n${payload}`), signature)) valid = true;
  return valid ? (claims as Record<string, unknown>) : null;
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
