/**
 * A function's configuration as an app describes it and the executor registers it: triggers,
 * retries, and the flow-control options (`concurrency`, `throttle`, `rateLimit`, `debounce`,
 * `batchEvents`, `singleton`, `idempotency`, `priority`, `timeouts`, `cancelOn`). Every option is checked here,
 * once, for the SDK's `createFunction` and for the executor's sync alike, and so are the
 * combinations of options that cannot both hold (`conflictingOptions`).
 */
import { z } from "zod";
import { storableText } from "./text.ts";
import { RESERVED_EVENT_PREFIX } from "./events.ts";
import { cronProblem } from "./cron.ts";
import { celProblem } from "./cel.ts";
import { toMs } from "./duration.ts";

/** Text that must parse as CEL (see `cel.ts`). */
export const celText = (what: string) =>
  storableText(what).superRefine((source, ctx) => {
    const problem = celProblem(source);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });

/** Retry backoff of a function or a step: `initialMs * factor^n`, capped at `maxMs`, with jitter. */
export const BackoffSchema = z.object({
  initialMs: z.number().int().positive().optional(),
  maxMs: z.number().int().positive().optional(),
  factor: z.number().min(1).optional(),
});
export type BackoffConfig = z.infer<typeof BackoffSchema>;

/** How many times a function or a step is retried after its first attempt. */
export const RetriesSchema = z.number().int().min(0).max(20);

/**
 * A trigger of a function: an event name, optionally filtered by a CEL expression over `event`,
 * or a cron pattern (see `cron.ts`): each tick starts one run with a {@link CRON_EVENT} event.
 */
export const TriggerSchema = z
  .object({
    event: storableText("trigger event")
      .min(1)
      // A signal or a callback's POST is for the one run that waits for it; no function starts on it (another app's would read it).
      .refine((name) => name !== "stepwise/signal" && name !== "stepwise/callback", "a trigger cannot be a signal or a callback's POST (stepwise/signal, stepwise/callback): those go to the run that waits for them")
      .optional(),
    if: celText("if").optional(),
    cron: storableText("cron").optional(),
  })
  .strict()
  .superRefine((trigger, ctx) => {
    if (trigger.cron === undefined) {
      if (trigger.event === undefined) ctx.addIssue({ code: "custom", message: 'a trigger needs an "event" or a "cron"' });
      return;
    }
    if (trigger.event !== undefined || trigger.if !== undefined) {
      ctx.addIssue({ code: "custom", message: 'a trigger has either "event" (with "if") or "cron", not both: write two triggers' });
      return;
    }
    const problem = cronProblem(trigger.cron);
    if (problem) ctx.addIssue({ code: "custom", path: ["cron"], message: problem });
  });
export type Trigger = z.infer<typeof TriggerSchema>;

/** The longest duration a function's configuration may give (a year): past it, dates overflow. */
const MAX_CONFIG_DURATION_MS = 366 * 86_400_000;

/** A duration in a function's configuration: milliseconds, or text such as "30s" or "1h". */
const ConfigDurationSchema = z.union([z.number(), z.string()]).superRefine((value, ctx) => {
  let ms: number;
  try {
    ms = toMs(value);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: error instanceof Error ? error.message : String(error) });
    return;
  }
  if (ms <= 0) ctx.addIssue({ code: "custom", message: `must be longer than 0, got ${JSON.stringify(value)}` });
  if (ms > MAX_CONFIG_DURATION_MS) ctx.addIssue({ code: "custom", message: `must be at most a year ("366d"), got ${JSON.stringify(value)}` });
});

/**
 * Cancel a run when an event arrives whose `match` field equals the trigger's (and `if` holds),
 * within `timeout` of the run's start when given (after it, the rule no longer listens).
 */
export const CancelOnSchema = z.object({
  // The executor's own events carry other runs' data; a cancel never listens to them.
  event: storableText("cancelOn event")
    .min(1)
    .refine((name) => !name.startsWith(RESERVED_EVENT_PREFIX), `cancelOn cannot name an executor event ("${RESERVED_EVENT_PREFIX}…")`),
  match: storableText("match").optional(),
  if: celText("if").optional(),
  timeout: ConfigDurationSchema.optional(),
});
export type CancelOn = z.infer<typeof CancelOnSchema>;

/**
 * How long a run may take: `start` from its event to its first invocation, `finish` from its
 * event to its end. Over either, the run is cancelled with a reason that names the timeout.
 */
export const TimeoutsSchema = z.object({ start: ConfigDurationSchema.optional(), finish: ConfigDurationSchema.optional() }).strict();
export type Timeouts = z.infer<typeof TimeoutsSchema>;

/** A check that an option's `period` lies between two durations (a bad duration is told by the period's own check). */
function periodWithin(minMs: number, min: string, maxMs: number, max: string) {
  return (option: { period: number | string }, ctx: z.RefinementCtx) => {
    let ms: number;
    try {
      ms = toMs(option.period);
    } catch {
      return;
    }
    if (ms < minMs || ms > maxMs) ctx.addIssue({ code: "custom", path: ["period"], message: `must be between ${min} and ${max}, got ${JSON.stringify(option.period)}` });
  };
}

/**
 * At most `limit` runs start per `period` (per value of the CEL `key` over `event`, when given);
 * an event over the limit is stored and its run is `skipped`, with a reason that says so.
 */
export const RateLimitSchema = z
  .object({ limit: z.number().int().min(1).max(100_000), period: ConfigDurationSchema, key: celText("key").optional() })
  .strict()
  .superRefine(periodWithin(1_000, "1s", 86_400_000, "24h"));
export type RateLimit = z.infer<typeof RateLimitSchema>;

/**
 * At most `limit` runs start per `period` (per value of the CEL `key` when given), spread evenly
 * with up to `burst` at once (default 1): a run over the limit is not dropped, it starts later.
 */
export const ThrottleSchema = z
  .object({
    limit: z.number().int().min(1).max(100_000),
    period: ConfigDurationSchema,
    burst: z.number().int().min(1).max(100_000).optional(),
    key: celText("key").optional(),
  })
  .strict()
  .superRefine(periodWithin(1_000, "1s", 7 * 86_400_000, "7d"));
export type Throttle = z.infer<typeof ThrottleSchema>;

/**
 * One run at a time per function (per value of the CEL `key` when given): a new run is skipped
 * while one is live (`mode: "skip"`), or the live one is cancelled for it (`"cancel"`).
 */
export const SingletonSchema = z.object({ key: celText("key").optional(), mode: z.enum(["skip", "cancel"]) }).strict();
export type Singleton = z.infer<typeof SingletonSchema>;

/**
 * One run for a burst of events: each event (per value of the CEL `key` when given) restarts a
 * quiet `period`, and the run starts once it passes, with the last event; the runs of the events
 * it replaced are `skipped`, naming the run that replaced them. `timeout` bounds how long a steady
 * stream can hold a start back, from the burst's first event.
 */
export const DebounceSchema = z
  .object({ period: ConfigDurationSchema, key: celText("key").optional(), timeout: ConfigDurationSchema.optional() })
  .strict()
  .superRefine(periodWithin(1_000, "1s", 7 * 86_400_000, "7d"))
  .superRefine((debounce, ctx) => {
    const [period, timeout] = [msOrNaN(debounce.period), msOrNaN(debounce.timeout)];
    if (timeout < period) ctx.addIssue({ code: "custom", path: ["timeout"], message: `must be at least the period (${JSON.stringify(debounce.period)}), got ${JSON.stringify(debounce.timeout)}` });
  });
export type Debounce = z.infer<typeof DebounceSchema>;

/** The most events one batch may hold. */
export const MAX_BATCH_SIZE = 100;

/**
 * Many events, one run: events (per value of the CEL `key` when given; those for which `if`
 * holds, when given, the others run alone) collect into a batch, whose run starts when it holds
 * `maxSize` events or `timeout` after its first event, whichever comes first. The handler gets
 * them all as `events`.
 */
export const BatchEventsSchema = z
  .object({
    maxSize: z.number().int().min(1).max(MAX_BATCH_SIZE),
    timeout: ConfigDurationSchema,
    key: celText("key").optional(),
    if: celText("if").optional(),
  })
  .strict()
  .superRefine((batch, ctx) => {
    const ms = msOrNaN(batch.timeout);
    if (ms < 1_000 || ms > 60_000) ctx.addIssue({ code: "custom", path: ["timeout"], message: `must be between 1s and 60s, got ${JSON.stringify(batch.timeout)}` });
  });
export type BatchEvents = z.infer<typeof BatchEventsSchema>;

/** A duration in milliseconds, or NaN when absent or not a duration (its own check says so). */
function msOrNaN(value: number | string | undefined): number {
  try {
    return value === undefined ? Number.NaN : toMs(value);
  } catch {
    return Number.NaN;
  }
}

/** How far a run's priority may move it in the queue, either way: 600 seconds. */
export const MAX_PRIORITY_SECONDS = 600;

/**
 * `priority.run`: a CEL expression over `event` giving seconds (-600 to 600): a run with 60 is
 * queued as if it had arrived a minute earlier than it did; one with -60 waits a minute.
 */
export const PrioritySchema = z.object({ run: celText("run") }).strict();
export type Priority = z.infer<typeof PrioritySchema>;

/** The most runs' steps one concurrency limit lets execute at once. */
export const MAX_CONCURRENCY_LIMIT = 100_000;

/**
 * One concurrency limit: at most `limit` steps of the function execute at once (a sleeping or
 * waiting run holds no slot), per value of the CEL `key` over `event` when given. `scope: "app"`
 * shares the count with every function of the app that uses the same key value.
 */
export const ConcurrencyLimitSchema = z
  .object({
    limit: z.number().int().min(1).max(MAX_CONCURRENCY_LIMIT),
    key: celText("key").optional(),
    scope: z.enum(["fn", "app"]).optional(),
  })
  .strict();
export type ConcurrencyLimit = z.infer<typeof ConcurrencyLimitSchema>;

const ConcurrencyShapes = {
  number: z.number().int().min(1).max(MAX_CONCURRENCY_LIMIT),
  list: z.array(ConcurrencyLimitSchema).min(1).max(2, "at most 2 concurrency limits"),
};
export type Concurrency = number | ConcurrencyLimit | ConcurrencyLimit[];

/**
 * `concurrency`: a limit, a limit with a key and scope, or up to two of them (both must have
 * room). Checked by its shape, so a problem is told in the terms of that shape (a union would
 * only say that no shape fits).
 */
export const ConcurrencySchema = z.custom<Concurrency>().superRefine((value, ctx) => {
  if (typeof value !== "number" && (typeof value !== "object" || value === null)) {
    ctx.addIssue({ code: "custom", message: `must be a number, { limit, key?, scope? } or a list of up to 2 of those, got ${JSON.stringify(value)}` });
    return;
  }
  const shape = typeof value === "number" ? ConcurrencyShapes.number : Array.isArray(value) ? ConcurrencyShapes.list : ConcurrencyLimitSchema;
  const checked = shape.safeParse(value);
  if (checked.success) return;
  for (const issue of checked.error.issues) ctx.addIssue({ code: "custom", path: issue.path, message: issue.message });
});

/** A function's concurrency limits as a list, whichever way its configuration wrote them. */
export function concurrencyLimits(concurrency: Concurrency | undefined): ConcurrencyLimit[] {
  if (concurrency === undefined) return [];
  if (typeof concurrency === "number") return [{ limit: concurrency }];
  return Array.isArray(concurrency) ? concurrency : [concurrency];
}

/** A function as an app describes it (`GET /api/durable`) and registers it (`PUT`). */
export const FunctionConfigSchema = z.object({
  /** App-local function ID (`fulfil`); the executor's global ID is `<appId>-<id>`. */
  id: storableText("function id").min(1),
  name: z.string().optional(),
  triggers: z.array(TriggerSchema),
  retries: RetriesSchema,
  cancelOn: z.array(CancelOnSchema).optional(),
  backoff: BackoffSchema.optional(),
  /**
   * A CEL expression over `event` (`"event.data.orderId"`): a run is started only if no run of
   * the function started with the same value in the last 24 hours.
   */
  idempotency: celText("idempotency").optional(),
  timeouts: TimeoutsSchema.optional(),
  rateLimit: RateLimitSchema.optional(),
  throttle: ThrottleSchema.optional(),
  priority: PrioritySchema.optional(),
  singleton: SingletonSchema.optional(),
  debounce: DebounceSchema.optional(),
  batchEvents: BatchEventsSchema.optional(),
  concurrency: ConcurrencySchema.optional(),
  /** Set on the companion function the SDK adds for an `onFailure` handler. */
  onFailureOf: z.string().optional(),
}).superRefine((config, ctx) => {
  for (const { path, message } of conflictingOptions(config)) ctx.addIssue({ code: "custom", path, message });
});
export type FunctionConfig = z.infer<typeof FunctionConfigSchema>;

/**
 * Options that cannot both hold.
 * - `rateLimit`, `throttle` and `singleton` decide about a run when its event arrives, but a
 *   debounced run's start is decided by the events after it: a rate limit would spend its starts
 *   on runs the debounce then drops, a throttle would hold back a start the debounce moves, a
 *   singleton would skip the very events the debounce is waiting for. A `priority` moves the
 *   same due time the quiet period sets: a high one would start each run before the next event
 *   could replace it, a low one past the debounce's `timeout`.
 * - A batch has many events, and these are worked out for one: `idempotency`, `rateLimit`,
 *   `throttle`, `singleton`, `debounce`, `priority`, `cancelOn`'s match.
 * - Timeouts counted from a run's event no longer than the wait before it starts (a quiet
 *   period, a batch's timeout) would cancel every such run before it starts.
 * - Two triggers for the same event (or the same cron) start one run, not two: one of them is
 *   a mistake. Cron ticks come one at a time: debouncing or batching them only delays them.
 */
function conflictingOptions(config: {
  triggers: Trigger[];
  debounce?: Debounce;
  rateLimit?: RateLimit;
  throttle?: Throttle;
  singleton?: Singleton;
  timeouts?: Timeouts;
  batchEvents?: BatchEvents;
  idempotency?: string;
  priority?: Priority;
  cancelOn?: CancelOn[];
}): Array<{ path: string[]; message: string }> {
  const problems: Array<{ path: string[]; message: string }> = [];
  const seen = new Set<string>();
  for (const [i, trigger] of config.triggers.entries()) {
    const what = trigger.cron === undefined ? `event ${JSON.stringify(trigger.event)}${trigger.if === undefined ? "" : ` if ${JSON.stringify(trigger.if)}`}` : `cron ${JSON.stringify(trigger.cron)}`;
    if (seen.has(what)) problems.push({ path: ["triggers", String(i)], message: `repeats the trigger on ${what}: one run starts either way, so remove one` });
    seen.add(what);
  }
  for (const option of ["debounce", "batchEvents"] as const) {
    if (config[option] === undefined) continue;
    for (const [i, trigger] of config.triggers.entries()) {
      if (trigger.cron !== undefined) problems.push({ path: ["triggers", String(i)], message: `a cron trigger cannot be combined with ${option}: its ticks come one at a time, on a schedule, and would only hold each other back` });
    }
  }
  if (config.debounce) {
    for (const other of ["rateLimit", "throttle", "singleton", "priority"] as const) {
      if (config[other] !== undefined) problems.push({ path: [other], message: `cannot be combined with debounce: it decides when each event arrives, while a debounced run starts only after the events that follow it (use concurrency to limit how many run at once)` });
    }
    problems.push(...timeoutsWithin(config.timeouts, config.debounce.period, "debounce.period", "every debounced run waits that long before it starts"));
  }
  if (config.batchEvents) {
    // Each decides about one event, or matches against the run's one event: a batch has many.
    for (const other of ["debounce", "idempotency", "rateLimit", "throttle", "singleton", "priority", "cancelOn"] as const) {
      if (config[other] !== undefined) problems.push({ path: [other], message: `cannot be combined with batchEvents: it is worked out for one event, and a batched run has many (use concurrency to limit how many batches run at once)` });
    }
    problems.push(...timeoutsWithin(config.timeouts, config.batchEvents.timeout, "batchEvents.timeout", "a batch may wait that long before its run starts"));
  }
  return problems;
}

/** Problems of `timeouts.start` and `.finish` no longer than `wait`, what a run may wait before it starts (`option` names it, `why` explains). */
function timeoutsWithin(timeouts: Timeouts | undefined, wait: number | string, option: string, why: string): Array<{ path: string[]; message: string }> {
  const problems: Array<{ path: string[]; message: string }> = [];
  for (const which of ["start", "finish"] as const) {
    if (msOrNaN(timeouts?.[which]) <= msOrNaN(wait)) problems.push({ path: ["timeouts", which], message: `must be longer than ${option} (${JSON.stringify(wait)}): ${why}` });
  }
  return problems;
}
