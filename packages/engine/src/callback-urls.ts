/**
 * Callback URLs (see `@stepwise/protocol`'s callbacks.ts for the token): the executor mints them
 * for a run's `step.createCallback` and takes the one POST each may receive. The POST is stored
 * as an event under an ID derived from the run and the callback step, so a second POST finds it
 * taken, and it reaches the run's `step.waitForCallback` whether the run waits already or comes
 * to the wait later (`new-waits.ts` reads it by that ID).
 */
import { CALLBACK_EVENT, CALLBACKS_ROUTE, derivedEventId, mintCallbackToken, readCallbackToken, sha256Hex, type Callback, type CallbackClaims } from "@stepwise/protocol";
import { InputError } from "./errors.ts";
import { checkStorable } from "./event-input.ts";
import type { Limits } from "./limits.ts";
import { formatDuration } from "./log.ts";
import type { EventRecord } from "./records.ts";

export interface CallbackUrlOptions {
  /** Where people and services reach this executor (`STEPWISE_PUBLIC_URL`); none: callbacks cannot be created. */
  publicUrl(): string | undefined;
  /** The key a run's app signs with (its own, or the shared one): callback URLs are made with it. */
  keyOf(appId: string): string;
  /** The keys a callback URL of the app is accepted with (during a rotation, the next one too). */
  keysOf(appId: string): readonly string[];
  /** How long the executor keeps events (0: for ever): a callback must not outlive its POST. */
  retentionMs: number;
}

/** The refusal of a token that is not one of this executor's, or not for the run it names. */
export const NOT_A_CALLBACK = "Not a valid callback URL: its token was changed, cut short or signed by another executor; use the URL exactly as the run created it";

/** Request headers a callback does not keep: credentials meant for something else. */
const DROPPED_HEADERS = new Set(["authorization", "cookie", "proxy-authorization"]);

/** The base of callback URLs: an http(s) URL without query or fragment (the token goes in its path). */
function publicBase(configured: string | undefined): string {
  if (!configured) throw new Error("the executor has no public URL to put in callback URLs: set STEPWISE_PUBLIC_URL to where people and services reach it");
  let url: URL;
  try {
    url = new URL(configured);
  } catch {
    throw new Error(`STEPWISE_PUBLIC_URL is not a URL: ${JSON.stringify(configured)} (e.g. "https://stepwise.example.com")`);
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.search || url.hash) {
    throw new Error(`STEPWISE_PUBLIC_URL must be an http(s) URL without a query or fragment, not ${JSON.stringify(configured)}`);
  }
  return url.href.replace(/\/+$/, "");
}

/** The ID `step.waitForCallback` names a callback by: opaque, unique to the run and step. */
export async function callbackId(runId: string, stepId: string): Promise<string> {
  return `cb_${(await sha256Hex(`${runId}\u0000${stepId}`)).slice(0, 32)}`;
}

/** The event ID a callback's POST is stored under: one per callback, so a second POST is refused. */
export const callbackEventId = (runId: string, stepId: string) => derivedEventId(runId, stepId, "callback");

export class CallbackUrls {
  constructor(private readonly options: CallbackUrlOptions) {}

  /** The callback of a run's step: its ID and capability URL. Throws when no public URL is set. */
  async mint(claims: { appId: string; runId: string; stepId: string; expiresAt: Date }): Promise<Callback> {
    const base = publicBase(this.options.publicUrl());
    const { retentionMs } = this.options;
    if (retentionMs > 0 && claims.expiresAt.getTime() - Date.now() > retentionMs) {
      throw new Error(`its timeout is longer than the executor keeps events (${formatDuration(retentionMs)}, STEPWISE_RETENTION): a POST could be pruned before its run read it`);
    }
    const token = await mintCallbackToken(this.options.keyOf(claims.appId), { ...claims, expiresAt: claims.expiresAt.getTime() });
    return { id: await callbackId(claims.runId, claims.stepId), url: `${base}${CALLBACKS_ROUTE}/${token}`, expiresAt: claims.expiresAt.toISOString() };
  }

  /**
   * What a POST to the callback URL with `token` says: whose callback it is (the token checked)
   * and the event it is to be stored as (`body` as the API read it: parsed when it was sent as
   * JSON). Throws {@link InputError}: 403 for a token that is not one this executor signed, 400/413
   * for a body that cannot be stored. Whether the run takes it is
   * the unit's to decide (`UnitOfWork.callback`), under the run's lock.
   */
  async received(token: string, request: { body: unknown; headers: Iterable<[string, string]> }, limits: Limits): Promise<{ claims: CallbackClaims; event: EventRecord }> {
    const claims = await readCallbackToken(token, (appId) => this.options.keysOf(appId));
    if (claims === "tampered") throw new InputError(NOT_A_CALLBACK, 403);
    const headers: Record<string, string> = {};
    for (const [name, value] of request.headers) if (!DROPPED_HEADERS.has(name.toLowerCase())) headers[name.toLowerCase()] = value;
    const event: EventRecord = { id: callbackEventId(claims.runId, claims.stepId), name: CALLBACK_EVENT, data: { callback: await callbackId(claims.runId, claims.stepId), body: request.body, headers }, ts: Date.now() };
    checkStorable(event, "callback", limits);
    return { claims, event };
  }
}
