/**
 * Callback URLs (see `@stepwise/protocol`'s callbacks.ts for the token): the executor mints them
 * for a run's `step.createCallback` and takes the one POST each may receive. The POST is stored
 * as an event under an ID derived from the run and the callback step, so a second POST finds it
 * taken, and it reaches the run's `step.waitForCallback` whether the run waits already or comes
 * to the wait later (`new-waits.ts` reads it by that ID).
 */
import { CALLBACK_EVENT, CALLBACKS_ROUTE, derivedEventId, mintCallbackToken, readCallbackToken, sha256Hex, type Callback } from "@stepwise/protocol";
import { InputError } from "./errors.ts";
import { checkStorable } from "./event-input.ts";
import type { Limits } from "./limits.ts";
import { isTerminal, type EventRecord } from "./records.ts";
import type { Store } from "./store.ts";

export interface CallbackUrlOptions {
  /** Where people and services reach this executor (`STEPWISE_PUBLIC_URL`); none: callbacks cannot be created. */
  publicUrl(): string | undefined;
  /** The key a run's app signs with (its own, or the shared one). */
  keyOf(appId: string): string;
}

/** Request headers a callback does not keep: credentials meant for something else. */
const DROPPED_HEADERS = new Set(["authorization", "cookie", "proxy-authorization"]);

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
    const base = this.options.publicUrl()?.replace(/\/+$/, "");
    if (!base) throw new Error("the executor has no public URL to put in callback URLs: set STEPWISE_PUBLIC_URL to where people and services reach it");
    const token = await mintCallbackToken(this.options.keyOf(claims.appId), { ...claims, expiresAt: claims.expiresAt.getTime() });
    return { id: await callbackId(claims.runId, claims.stepId), url: `${base}${CALLBACKS_ROUTE}/${token}`, expiresAt: claims.expiresAt.toISOString() };
  }

  /**
   * The event a POST to the callback URL with `token` is stored as. Throws {@link InputError}:
   * 403 for a token that is not one this executor signed, 410 for one past its time or whose run
   * ended, 404 for a run that is gone, 400/413 for a body that cannot be stored.
   */
  async received(token: string, request: { body: string; contentType: string | undefined; headers: Iterable<[string, string]> }, store: Store, limits: Limits, now: number): Promise<EventRecord> {
    const claims = await readCallbackToken(token, (appId) => [this.options.keyOf(appId)]);
    if (claims === "tampered") throw new InputError("Not a valid callback URL: its token was changed, cut short or signed by another executor; use the URL exactly as the run created it", 403);
    if (claims.expiresAt <= now) throw new InputError(`This callback URL expired at ${new Date(claims.expiresAt).toISOString()}; the run no longer waits for it`, 410);
    const run = await store.getRun(claims.runId);
    if (!run) throw new InputError(`The run of this callback URL (${claims.runId}) no longer exists`, 404);
    if (isTerminal(run.status)) throw new InputError(`The run of this callback URL (${claims.runId}) has ended (${run.status}); it takes no more callbacks`, 410);
    let body: unknown = request.body;
    if (request.contentType?.toLowerCase().includes("json") && request.body.trim() !== "") {
      try {
        body = JSON.parse(request.body);
      } catch (error) {
        throw new InputError(`The callback's body is not the JSON its content-type says: ${(error as Error).message}`);
      }
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of request.headers) if (!DROPPED_HEADERS.has(name.toLowerCase())) headers[name.toLowerCase()] = value;
    const event: EventRecord = { id: callbackEventId(claims.runId, claims.stepId), name: CALLBACK_EVENT, data: { callback: await callbackId(claims.runId, claims.stepId), body, headers }, ts: now };
    checkStorable(event, "callback", limits);
    return event;
  }
}
