/**
 * Request signing between executor and app: HMAC-SHA256 over the timestamp, the method, the
 * target (path and query) and the raw body, so a captured request verifies only as what it
 * was: the same method to the same path and function, within a minute of being signed.
 *
 * Header: `x-stepwise-signature: t=<unix seconds>,s=<hex digest>`. Uses WebCrypto, so it runs
 * unchanged in Node, Workers, Deno and Bun; where the runtime hands out `node:crypto` without an
 * import (`process.getBuiltinModule`: Node, Bun, Deno), its one-call HMAC is used instead, which
 * costs a fraction of WebCrypto's per-call overhead on a path every step takes twice. Two keys
 * may be valid at once (current and next) so a key can be rotated without downtime.
 */

/** The public key the dev server signs with; apps accept it only in dev mode. */
export const DEV_SIGNING_KEY = "stepwise-dev-signing-key-not-secret";

/**
 * How far a signature's timestamp may be from the verifier's clock. Short, because a request
 * is verified the moment it arrives: this covers clock drift and a cold start, not storage.
 */
export const SIGNATURE_TOLERANCE_SECONDS = 60;

/** What a signature covers besides its timestamp. */
export interface SignedRequest {
  /** `POST`, `GET`, `PUT` (compared upper-cased). */
  method: string;
  /** The path and query the request is addressed to, e.g. `/api/durable?fnId=fulfil`: see {@link requestTarget}. */
  target: string;
  body: string;
}

/** The part of a URL a signature binds: its path and query, as sent. */
export function requestTarget(url: string | URL): string {
  const parsed = typeof url === "string" ? new URL(url) : url;
  return `${parsed.pathname}${parsed.search}`;
}

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

type Hasher = { update(text: string, encoding: "utf8"): { digest(encoding: "hex"): string } };
interface NodeCrypto {
  createHmac(algorithm: "sha256", key: string): Hasher;
  createHash(algorithm: "sha256"): Hasher;
}

/**
 * `node:crypto` where the runtime offers it without a static import (the edge entries stay
 * free of Node built-ins): its one-call HMAC and hash take a few microseconds, where each
 * WebCrypto call is a trip through a thread pool (measured 46 µs idle, over a millisecond
 * on a busy executor).
 */
const nodeCrypto: NodeCrypto | undefined = (() => {
  try {
    const getBuiltin = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule;
    const found = getBuiltin?.("node:crypto") as Partial<NodeCrypto> | undefined;
    return found?.createHmac && found.createHash ? (found as NodeCrypto) : undefined;
  } catch {
    return undefined;
  }
})();

async function digest(secret: string, timestamp: number, request: SignedRequest): Promise<string> {
  // Newlines cannot occur in a method or a URL's path and query, so the parts cannot run into each other.
  return hmacSha256Hex(secret, `${timestamp}\n${request.method.toUpperCase()}\n${request.target}\n${request.body}`);
}

/** HMAC-SHA256 of `text` (UTF-8) under `secret`, as hex: node:crypto where present, else WebCrypto. */
export async function hmacSha256Hex(secret: string, text: string): Promise<string> {
  if (nodeCrypto) return nodeCrypto.createHmac("sha256", secret).update(text, "utf8").digest("hex");
  return toHex(await crypto.subtle.sign("HMAC", await hmacKey(secret), encoder.encode(text)));
}

/** Compares in time independent of where the strings differ. */
export function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * Whether `given` (a bearer key) is one of `keys`, in time that says nothing about how much of
 * it was right: the digests, of one length whatever the keys, are compared byte by byte, and
 * every key is tried.
 */
export async function keyMatches(given: string, keys: readonly string[]): Promise<boolean> {
  const wanted = await sha256Hex(given);
  let matched = false;
  for (const key of keys) if (constantTimeEqual(await keyDigest(key), wanted)) matched = true;
  return matched;
}

/** SHA-256 of `text` (UTF-8) as hex: node:crypto where present, else WebCrypto. */
export async function sha256Hex(text: string): Promise<string> {
  if (nodeCrypto) return nodeCrypto.createHash("sha256").update(text, "utf8").digest("hex");
  return toHex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/** Digests of the configured keys (a handful per process), worked out once. */
const keyDigests = new Map<string, Promise<string>>();

function keyDigest(key: string): Promise<string> {
  let known = keyDigests.get(key);
  if (!known) {
    if (keyDigests.size >= 64) keyDigests.clear();
    keyDigests.set(key, (known = sha256Hex(key)));
  }
  return known;
}

/** Signs `request` with `secret`; returns the header value. */
export async function sign(secret: string, request: SignedRequest, nowMs = Date.now()): Promise<string> {
  const timestamp = Math.floor(nowMs / 1000);
  return `t=${timestamp},s=${await digest(secret, timestamp, request)}`;
}

// No leading zeros: one timestamp has one spelling.
const HEADER_SHAPE = /^t=[1-9]\d{0,11},s=[0-9a-f]{64}$/;

/**
 * What is wrong with a signature header's shape, or null when it has the shape of one:
 * checked before anything else is read, so a request without one is refused before its
 * body is buffered.
 */
export function signatureHeaderProblem(header: string | null | undefined): (VerifyResult & { ok: false }) | null {
  if (!header) {
    return { ok: false, problem: "missing", message: "Missing x-stepwise-signature header: requests must be signed by the executor" };
  }
  if (!HEADER_SHAPE.test(header.trim())) {
    return { ok: false, problem: "malformed", message: "Malformed x-stepwise-signature header: expected t=<unix seconds>,s=<64 hex digits>" };
  }
  return null;
}

/** Why a signature was rejected, in words that tell the operator what to fix. */
export type SignatureProblem = "missing" | "malformed" | "stale" | "mismatch";

export type VerifyResult = { ok: true } | { ok: false; problem: SignatureProblem; message: string };

/**
 * Checks a signature header against `request` with any of `secrets` (current, next). A
 * receiver known by more than one path (its own, the public one a proxy forwards) passes
 * each as a target. Rejects a missing or malformed header, a timestamp outside the tolerance,
 * or a digest that matches none (a tampered body, another target, or a wrong key).
 */
export async function verify(
  header: string | null | undefined,
  request: SignedRequest | { method: string; targets: readonly string[]; body: string },
  secrets: readonly string[],
  nowMs = Date.now(),
): Promise<VerifyResult> {
  const shape = signatureHeaderProblem(header);
  if (shape) return shape;
  const [t, s] = header!.trim().split(",");
  const timestamp = Number(t!.slice(2));
  const signature = s!.slice(2);
  const skew = Math.abs(nowMs / 1000 - timestamp);
  if (skew > SIGNATURE_TOLERANCE_SECONDS) {
    return {
      ok: false,
      problem: "stale",
      message: `Stale signature: signed ${Math.round(skew)}s away from now, tolerance is ${SIGNATURE_TOLERANCE_SECONDS}s (check the clocks)`,
    };
  }
  const targets = "targets" in request ? request.targets : [request.target];
  let matched = false;
  for (const target of targets) {
    for (const secret of secrets) {
      // Every digest is computed and compared, so the time taken says nothing about which came close.
      if (constantTimeEqual(await digest(secret, timestamp, { ...request, target }), signature)) matched = true;
    }
  }
  if (matched) return { ok: true };
  return {
    ok: false,
    problem: "mismatch",
    message:
      "Signature does not match: the body was altered, the request was signed for another method, path or function, " +
      "or the signing keys differ (check STEPWISE_SIGNING_KEY)",
  };
}
