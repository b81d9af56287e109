/**
 * The client: one per app. It names the app, holds the event schemas that type everything
 * else, creates functions and sends events.
 */
import { traceHeaders } from "./tracing.ts";
import { z } from "zod";
import { issuesText, MAX_STREAM_TOKEN_MS, mintStreamToken, NO_WAITING_RUN, runStreamPath, SignalInputSchema, SIGNALS_ROUTE, SignalSentSchema, toMs, type Duration, type SignalSent } from "@stepwise/protocol";
import { postToExecutor } from "./api.ts";
import type { CheckpointingSetting } from "./checkpointing.ts";
import { MISSING_SIGNING_KEY, outgoingSigningKey, resolveSettings, type ConnectionOptions, type EnvSource, type Settings } from "./env.ts";
import { SignalNotDeliveredError, StepwiseApiError } from "./errors.ts";
import { StepwiseFunction, type FunctionContext, type FunctionOptions } from "./function.ts";
import type { EventName, EventSchemas, Logger, SendEventPayload, SendResult } from "./types.ts";
import { validateEvents } from "./validate.ts";

/** Options of `new Stepwise()`. Connection settings fall back to `STEPWISE_*` variables. */
export interface StepwiseOptions<S extends EventSchemas> extends ConnectionOptions {
  /** The app ID; the executor's function IDs are `<appId>-<functionId>`. */
  id: string;
  /** Event name → zod schema of its data: types handlers and validates what is sent. */
  schemas?: S;
  /** Sends events with this key (else `STEPWISE_EVENT_KEY`; `"dev"` in dev mode). */
  eventKey?: string;
  /** The executor (else `STEPWISE_BASE_URL`, else `http://127.0.0.1:8288`). */
  baseUrl?: string;
  /** Verifies the executor's requests and signs registration (else `STEPWISE_SIGNING_KEY`). */
  signingKey?: string;
  /** The next signing key during a rotation (else `STEPWISE_SIGNING_KEY_NEXT`). */
  signingKeyNext?: string;
  /** Dev mode: accepts the public dev key (else `STEPWISE_DEV=1`). */
  dev?: boolean;
  /** The fetch used to reach the executor (tests, proxies). */
  fetch?: typeof fetch;
  /** Where lines of function loggers and SDK notices go (default: `console`). */
  logger?: Logger;
  /**
   * Runs consecutive `step.run`s in one invocation, each result committed by the executor
   * before the next step starts (default: on, `maxRuntime` 5 s). `false` turns it off for every
   * function of the app; a function's own setting wins.
   */
  checkpointing?: CheckpointingSetting;
}

const SendAnswerSchema = z.object({ ids: z.array(z.string()) });

/** The runtime's fetch, looked up at each call; one function, so what is kept per fetch (checkpoint senders) is shared. */
const globalFetch: typeof fetch = (input, init) => globalThis.fetch(input, init);

/** What {@link Stepwise.streamToken} gives: the stream's URL (token included), for a browser. */
export interface StreamAccess {
  token: string;
  url: string;
  expiresAt: string;
}

/** A Stepwise app: `new Stepwise({ id: "shop", schemas: { "order/created": z.object(...) } })`. */
export class Stepwise<S extends EventSchemas = Record<never, never>> {
  /** The app ID. */
  readonly id: string;
  /** The event schemas. */
  readonly schemas: S | undefined;
  readonly #options: StepwiseOptions<S>;

  constructor(options: StepwiseOptions<S>) {
    if (typeof options.id !== "string" || options.id === "") throw new TypeError("new Stepwise(): `id` (the app ID) is required");
    this.id = options.id;
    this.schemas = options.schemas;
    this.#options = options;
  }

  /** Where SDK notices and function logs go. @internal */
  get log(): Logger {
    return this.#options.logger ?? console;
  }

  /**
   * Defines a durable function. `triggers` name its events (or cron schedules); `event.data` in
   * the handler is typed from their schemas. The handler is replayed from the top on each invocation: put
   * side effects inside steps.
   */
  createFunction<const E extends EventName<S> = never, O = unknown, const C extends string = never>(
    options: FunctionOptions<S, E, C>,
    handler: (context: FunctionContext<S, E, C>) => O,
  ): StepwiseFunction<S, E, Awaited<O>, C> {
    return new StepwiseFunction<S, E, Awaited<O>, C>(
      { id: this.id, schemas: this.schemas, log: this.log, checkpointing: this.#options.checkpointing },
      options,
      handler as (context: FunctionContext<S, E, C>) => Awaited<O>,
    );
  }

  /**
   * Sends one or more events to the executor, each validated with its schema first (throws
   * {@link StepwiseValidationError}, nothing sent). Resolves the stored event IDs; throws
   * {@link StepwiseApiError} when the executor refuses.
   */
  async send<const N extends EventName<S>>(events: SendEventPayload<S, N> | readonly SendEventPayload<S, N>[]): Promise<SendResult> {
    const outgoing = validateEvents(this.schemas, Array.isArray(events) ? events : [events]);
    const answer = await this.postEvents("/api/events", JSON.stringify(outgoing));
    const parsed = SendAnswerSchema.safeParse(answer);
    if (!parsed.success) {
      throw new StepwiseApiError(502, `${this.settings().baseUrl}/api/events answered without event ids: ${JSON.stringify(answer).slice(0, 200)}`);
    }
    return { ids: parsed.data.ids };
  }

  /**
   * Sends a signal to the run waiting for it (`step.waitForSignal({ signal })`), which resumes
   * with `{ signal, data }`. Resolves the run it resumed; with an `id`, a signal already
   * delivered under that ID is not delivered again (`duplicate: true`), so a retry after a lost
   * answer is safe. Throws {@link SignalNotDeliveredError} when no run waits for it (the executor
   * waits a few seconds for one to reach its wait first), {@link StepwiseApiError} otherwise.
   */
  async sendSignal(signal: { signal: string; data?: unknown; id?: string }): Promise<SignalSent> {
    const checked = SignalInputSchema.safeParse(signal);
    if (!checked.success) throw new StepwiseApiError(400, `Invalid signal: ${issuesText(checked.error.issues, "signal")}`);
    const answer = await this.postEvents(SIGNALS_ROUTE, JSON.stringify(checked.data)).catch((error: unknown) => {
      // Only the executor's "no run waits" is that; another 404 (no such route: an older executor, a wrong base URL) is not.
      if (error instanceof StepwiseApiError && error.status === 404 && error.code === NO_WAITING_RUN) throw new SignalNotDeliveredError(checked.data.signal, error.message);
      throw error;
    });
    const parsed = SignalSentSchema.safeParse(answer);
    if (!parsed.success) throw new StepwiseApiError(502, `${this.settings().baseUrl}${SIGNALS_ROUTE} answered without the signal's id: ${JSON.stringify(answer).slice(0, 200)}`);
    return parsed.data;
  }

  /**
   * A URL from which a browser may read one run's live stream (`@stepwise/sdk/realtime`'s
   * `subscribe`) without any key of the executor: a token signed with this app's signing key,
   * for that run only, until it expires (default 1 hour, at most 7 days). Mint it in your server
   * for a user who may see the run; the executor refuses it for any other run. The URL is on
   * `publicUrl` when given (where browsers reach the executor), else on the client's base URL.
   */
  async streamToken(runId: string, options: { expiresIn?: Duration; publicUrl?: string } = {}): Promise<StreamAccess> {
    if (typeof runId !== "string" || runId === "") throw new TypeError("streamToken(runId): runId must be the run's ID");
    const settings = this.settings();
    const key = outgoingSigningKey(settings);
    if (!key) throw new StepwiseApiError(401, MISSING_SIGNING_KEY);
    const ms = toMs(options.expiresIn ?? "1h");
    if (!(ms >= 1_000 && ms <= MAX_STREAM_TOKEN_MS)) throw new RangeError(`streamToken: expiresIn must be between 1s and 7d, not ${JSON.stringify(options.expiresIn)}`);
    const expiresAt = Date.now() + ms;
    const token = await mintStreamToken(key, { appId: this.id, runId, expiresAt });
    const base = (options.publicUrl ?? settings.baseUrl).replace(/\/+$/, "");
    return { token, url: `${base}${runStreamPath(runId)}?token=${token}`, expiresAt: new Date(expiresAt).toISOString() };
  }

  /** Posts `body` to `route` of the executor with the event key (events and signals). */
  private async postEvents(route: string, body: string): Promise<unknown> {
    const settings = this.settings();
    if (!settings.eventKey) {
      throw new StepwiseApiError(401, "No event key: set STEPWISE_EVENT_KEY (or pass eventKey to new Stepwise()), or STEPWISE_DEV=1 for local development");
    }
    return postToExecutor({
      fetch: this.fetch,
      url: `${settings.baseUrl}${route}`,
      body,
      // The active trace goes with the events: their runs' spans join it.
      headers: { authorization: `Bearer ${settings.eventKey}`, ...traceHeaders() },
    });
  }

    /** Connection settings for one call; `env` (a Worker's bindings) overrides `process.env`. @internal */
  settings(env?: EnvSource): Settings {
    return resolveSettings(this.#options, env);
  }

  /** Whether the client was given a fetch of its own: then every request to the executor goes through it. @internal */
  get hasOwnFetch(): boolean {
    return this.#options.fetch !== undefined;
  }

  /** The fetch to reach the executor with, looked up per call so tests and polyfills apply. @internal */
  get fetch(): typeof fetch {
    return this.#options.fetch ?? globalFetch;
  }
}
