/**
 * A durable function: its configuration as the executor sees it, and the handler replayed on
 * each invocation. Created with `stepwise.createFunction()`.
 */
import { resolveCheckpointing, type CheckpointingSetting } from "./checkpointing.ts";
import {
  issuesText,
  CRON_EVENT,
  FunctionConfigSchema,
  type BackoffConfig,
  type CancelOn,
  type ConcurrencyLimit,
  type CronEventData,
  type Duration,
  type FunctionConfig,
  type Trigger,
} from "@stepwise/protocol";
import type { StepTools } from "./step-tools.ts";
import type { Publish } from "./publisher.ts";
import type { EventName, EventSchemas, Logger, TypedEvent } from "./types.ts";

/** The event a cron tick starts its run with. */
export interface CronEvent {
  id: string;
  name: typeof CRON_EVENT;
  data: CronEventData;
  ts: number;
}

/**
 * The event a handler receives: the union of its triggers' events, and {@link CronEvent} when
 * it has a cron trigger (`C` is inferred from it); any event without triggers.
 */
export type HandlerEvent<S extends EventSchemas, E extends string, C extends string = never> =
  | ([E] extends [never] ? ([C] extends [never] ? { id: string; name: string; data: unknown; ts: number } : never) : TypedEvent<S, E>)
  | ([C] extends [never] ? never : CronEvent);

/** What a handler receives on each invocation. */
export interface FunctionContext<S extends EventSchemas, E extends string, C extends string = never> {
  /** The event that started the run. */
  event: HandlerEvent<S, E, C>;
  /** All events of the run, in order of arrival: a batch's (see `batchEvents`), or the one that started it. */
  events: HandlerEvent<S, E, C>[];
  step: StepTools<S>;
  runId: string;
  /** 0-based attempt of the function body. */
  attempt: number;
  /** Logs prefixed with the run ID; silent while replaying steps already done. */
  logger: Logger;
  /**
   * Sends progress to the run's live stream (`GET /api/runs/:id/stream`, `@stepwise/sdk/realtime`):
   * a model's tokens as they arrive, "3 of 10 pages read". Not durable: sent once, when the code
   * runs for real (not while the replay re-reads stored steps), dropped with a warning if the
   * executor does not take it, never an error of the run. Rejects only a bad message (a topic that
   * is not 1-128 characters of text, data that is not JSON or is over 64 KB).
   */
  publish: Publish;
}

/** What an `onFailure` handler receives once the run has failed for good. */
export interface FailureContext<S extends EventSchemas, E extends string, C extends string = never> {
  /** The error the run failed with (name and message as stored). */
  error: Error;
  /** The event that started the failed run. */
  event: HandlerEvent<S, E, C>;
  /** The ID of the failed run. */
  runId: string;
  /** Steps of the failure handler's own run. */
  step: StepTools<S>;
  attempt: number;
  logger: Logger;
}

/** The options of `createFunction()`. */
export interface FunctionOptions<S extends EventSchemas, E extends string, C extends string = never> {
  /** App-local ID; keep it stable, runs in flight are bound to it. */
  id: string;
  /** Display name. */
  name?: string;
  /**
   * What starts a run: events (`if` is a CEL expression over `event`), or a cron schedule
   * (`{ cron: "TZ=Europe/Paris 0 9 * * 1-5" }`, seconds optional): one run per tick, with a
   * `stepwise/cron` event whose data says which tick.
   */
  triggers: readonly ({ event: E; if?: string; cron?: never } | { cron: C; event?: never; if?: never })[];
  /** Retries after the first attempt, per step and for the function body (default 3, max 20). */
  retries?: number;
  /**
   * A CEL expression over `event` (`"event.data.orderId"`): an event starts a run only if no run
   * of this function started with the same value in the last 24 hours (later events are stored,
   * and start nothing here). An event the expression has no value for starts its run as usual.
   */
  idempotency?: string;
  /**
   * Cancel a run that has not started `start` after its event (it waited in the queue: checked
   * when an executor reaches it), or not finished `finish` after its event. Durations are
   * milliseconds or text (`"30s"`, `"1h"`); the cancellation's reason names the timeout.
   */
  timeouts?: { start?: Duration; finish?: Duration };
  /**
   * At most `limit` runs start per `period` (1s to 24h), per value of `key` (a CEL expression
   * over `event`) when given. An event over the limit is stored, and its run is `skipped` with a
   * reason that says so; nothing is queued for later (use it where a late run is no use).
   */
  rateLimit?: { limit: number; period: Duration; key?: string };
  /**
   * At most `limit` runs start per `period` (1s to 7d), per value of `key` when given, spread
   * evenly with up to `burst` (default 1) at once. A run over the limit is not dropped: it starts
   * as soon as the limit allows (use `rateLimit` to skip such runs instead).
   */
  throttle?: { limit: number; period: Duration; burst?: number; key?: string };
  /**
   * `run`: a CEL expression over `event` giving seconds, -600 to 600
   * (`"event.data.plan == 'pro' ? 120 : 0"`): the run's first invocation is queued as if its
   * event had come that much earlier (a negative value: later). It matters when runs wait for
   * lanes or concurrency slots: higher priority goes first.
   */
  priority?: { run: string };
  /**
   * One run at a time (per value of `key`, a CEL expression over `event`, when given): while a
   * run is live, a new one is `skip`ped (created already ended, saying which run holds the key),
   * or the live one is `cancel`led for it.
   */
  singleton?: { key?: string; mode: "skip" | "cancel" };
  /**
   * One run for a burst: each event (per value of `key`, a CEL expression over `event`, when
   * given) restarts a quiet `period` (1s to 7d), and the run starts once it passes, with the last
   * event. The runs of the events it replaced are `skipped`, naming the run that replaced them.
   * `timeout` (at least `period`) bounds how long a steady stream can hold the start back,
   * counted from the burst's first event. Cannot be combined with `rateLimit`, `throttle` or
   * `singleton`.
   */
  debounce?: { period: Duration; key?: string; timeout?: Duration };
  /**
   * Many events, one run: events collect into a batch (per value of `key`, a CEL expression over
   * `event`, when given), and its run starts when it holds `maxSize` events (1 to 100) or
   * `timeout` (1s to 60s) after its first one, whichever comes first. The handler gets them all,
   * in order of arrival, as `events` (`event` is the first). Events for which `if` (a CEL
   * condition) does not hold run alone, at once. Cannot be combined with options worked out for
   * one event: `debounce`, `idempotency`, `rateLimit`, `throttle`, `singleton`, `priority`,
   * `cancelOn`.
   */
  batchEvents?: { maxSize: number; timeout: Duration; key?: string; if?: string };
  /**
   * At most this many steps of the function execute at once, across every executor (a run that
   * sleeps or waits holds no slot; runs over the limit wait their turn, in order). With `key` (a
   * CEL expression over `event`) the limit holds per value; `scope: "app"` shares the count with
   * the app's other functions that use the same key value. Up to two limits, both must have room.
   */
  concurrency?: number | ConcurrencyLimit | readonly [ConcurrencyLimit] | readonly [ConcurrencyLimit, ConcurrencyLimit];
  /**
   * Cancel a run when one of these events arrives (`match`: a path equal in both events; `if`:
   * a CEL condition over `event` and `async`), within `timeout` of the run's start when given.
   */
  cancelOn?: readonly { event: EventName<S>; match?: string; if?: string; timeout?: Duration }[];
  /** Retry backoff: `initialMs * factor^n`, capped at `maxMs`, with jitter. */
  backoff?: BackoffConfig;
  /** Runs (durably, as its own function) after a run failed for good. */
  onFailure?: (context: FailureContext<S, E, C>) => unknown;
  /**
   * Runs consecutive `step.run`s in one invocation, each result committed before the next step
   * starts (default: on, with the client's setting; `false` turns it off for this function).
   */
  checkpointing?: CheckpointingSetting;
}

/** How a function is run by the replay: the parts the runtime needs, without the types. */
export interface RunnableFunction {
  readonly config: FunctionConfig;
  readonly appId: string;
  readonly schemas: EventSchemas | undefined;
  readonly log: Logger;
  readonly handler: (context: FunctionContext<EventSchemas, string>) => unknown;
  /** How long one invocation may go on checkpointing steps, in ms; null when checkpointing is off. */
  readonly checkpointBudgetMs: number | null;
}

/** The default number of retries. */
export const DEFAULT_RETRIES = 3;

/** A function created by `createFunction()`: pass it to `serve()` or to `step.invoke()`. */
export class StepwiseFunction<S extends EventSchemas = EventSchemas, E extends string = string, O = unknown, C extends string = never>
  implements RunnableFunction
{
  /** App-local function ID. */
  readonly id: string;
  /** The ID of the app (client) that defines it. */
  readonly appId: string;
  /** The configuration the app describes and registers. */
  readonly config: FunctionConfig;
  readonly schemas: EventSchemas | undefined;
  readonly log: Logger;
  readonly handler: (context: FunctionContext<EventSchemas, string>) => unknown;
  readonly onFailure: ((context: FailureContext<EventSchemas, string>) => unknown) | undefined;
  /** Types only (never set): lets `step.invoke` infer the child's data and output. */
  declare readonly "~types": { event: HandlerEvent<S, E, C>; output: O };

  readonly checkpointBudgetMs: number | null;

  constructor(
    app: { id: string; schemas: EventSchemas | undefined; log: Logger; checkpointing?: CheckpointingSetting },
    options: FunctionOptions<S, E, C>,
    handler: (context: FunctionContext<S, E, C>) => O | Promise<O>,
  ) {
    this.id = options.id;
    this.appId = app.id;
    this.schemas = app.schemas;
    this.log = app.log;
    this.config = functionConfig(options);
    this.handler = handler as unknown as RunnableFunction["handler"];
    this.onFailure = options.onFailure as StepwiseFunction["onFailure"];
    try {
      this.checkpointBudgetMs = resolveCheckpointing(options.checkpointing, app.checkpointing);
    } catch (error) {
      throw new TypeError(`createFunction("${String(options.id)}"): ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

/** Any function, whatever its events and output. */
export type AnyStepwiseFunction = StepwiseFunction<any, any, any, any>;
/** The `data` a function's trigger events carry (what `step.invoke` must pass). */
export type InvokeData<F extends AnyStepwiseFunction> = F["~types"]["event"]["data"];
/** What a function returns (before the JSON round trip). */
export type FunctionOutput<F extends AnyStepwiseFunction> = F["~types"]["output"];

/** Builds and checks the wire configuration; a bad option fails at startup, not at sync time. */
function functionConfig(options: Omit<FunctionOptions<EventSchemas, string, string>, "onFailure">): FunctionConfig {
  const config: FunctionConfig = {
    id: options.id,
    triggers: options.triggers.map((trigger): Trigger => ({ ...trigger })),
    retries: options.retries ?? DEFAULT_RETRIES,
  };
  if (options.name !== undefined) config.name = options.name;
  if (options.cancelOn) config.cancelOn = options.cancelOn.map((cancel): CancelOn => ({ ...cancel }));
  if (options.backoff) config.backoff = { ...options.backoff };
  if (options.idempotency !== undefined) config.idempotency = options.idempotency;
  if (options.timeouts) config.timeouts = { ...options.timeouts };
  if (options.rateLimit) config.rateLimit = { ...options.rateLimit };
  if (options.throttle) config.throttle = { ...options.throttle };
  if (options.priority) config.priority = { ...options.priority };
  if (options.singleton) config.singleton = { ...options.singleton };
  if (options.debounce) config.debounce = { ...options.debounce };
  if (options.batchEvents) config.batchEvents = { ...options.batchEvents };
  if (options.concurrency !== undefined) {
    const { concurrency } = options;
    // Copied, so later changes to the caller's object do not reach the registered configuration.
    config.concurrency = Array.isArray(concurrency)
      ? concurrency.map((limit) => ({ ...limit }))
      : typeof concurrency === "object" && concurrency !== null
        ? { ...(concurrency as ConcurrencyLimit) }
        : (concurrency as number);
  }
  const checked = FunctionConfigSchema.safeParse(config);
  if (!checked.success) {
    const problems = issuesText(checked.error.issues, "options");
    throw new TypeError(`createFunction("${String(options.id)}"): ${problems}`);
  }
  return config;
}
