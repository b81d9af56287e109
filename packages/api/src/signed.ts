/**
 * Requests an app signs (its registration, its checkpoints): the signature's shape before the
 * body is read, then the body verified with the key of the app it names. An app with a key of
 * its own is verified by that key alone, so the shared one cannot speak for it.
 */
import { DEV_SIGNING_KEY, signatureHeaderProblem, verify } from "@stepwise/protocol";
import { ownSigningKey } from "@stepwise/engine";
import { parseJson } from "./input.ts";

export interface SigningKeys {
  /** Dev mode: apps may also sign with the public dev key. */
  dev: boolean;
  /** Keys apps sign with (current and next). */
  signingKeys: string[];
  /** Apps with keys of their own, by app ID. */
  appSigningKeys?: Readonly<Record<string, string>>;
}

export type SignedRequest =
  | { refusal: { status: 400 | 401; body: { error: string } } }
  /** `appId` is what the body names: a string whenever `missingAppId` was given. */
  | { header: string; body: unknown; appId: unknown };

/**
 * Verifies a signed request: `readBody` gives its text (called only once the header has the
 * right shape), `appIdOf` finds the app it names; with `missingAppId`, a body naming none is
 * refused with that message (else the caller's own validation says what is wrong).
 */
export async function verifySignedByApp(
  keys: SigningKeys,
  what: string,
  target: string,
  header: string | undefined,
  readBody: () => string | Promise<string>,
  appIdOf: (body: unknown) => unknown,
  missingAppId?: string,
): Promise<SignedRequest> {
  const shape = signatureHeaderProblem(header);
  if (shape) return { refusal: { status: 401, body: { error: `${what} rejected: ${shape.message}` } } };
  const raw = await readBody();
  const body = parseJson(raw);
  const claimed = appIdOf(body);
  if (missingAppId && typeof claimed !== "string") return { refusal: { status: 400, body: { error: missingAppId } } };
  const own = ownSigningKey(keys.appSigningKeys, claimed);
  const candidates = own ? [own] : keys.dev ? [...keys.signingKeys, DEV_SIGNING_KEY] : keys.signingKeys;
  const check = await verify(header, { method: "POST", target, body: raw }, candidates);
  if (!check.ok) return { refusal: { status: 401, body: { error: `${what} rejected: ${check.message}${own ? ` (app "${claimed}" has a key of its own)` : ""}` } } };
  return { header: header!, body, appId: claimed };
}
