/**
 * The wire between the executor and an app's `/api/durable` endpoint.
 *
 * One invocation is `POST /api/durable?fnId=<functionId>` with an {@link InvokeRequest} body,
 * signed by the executor (see `signing.ts`). The app replays the function from the top with
 * the stored step results and answers with an {@link InvokeResponse}:
 *   - `completed` (HTTP 200): the function returned; `output` is its JSON result.
 *   - `ops` (HTTP 206): the function reached steps that have no stored result; each op says
 *     what the executor must do next (store a result, schedule a sleep, open a wait, …).
 *   - `error` (HTTP 500): the function threw outside any step (or replay found it
 *     non-deterministic); `retriable` says whether another attempt makes sense.
 *
 * The executor validates every answer with these schemas: a malformed answer is an app error.
 */
import { z } from "zod";
import { storableText } from "./text.ts";
import { RESERVED_EVENT_PREFIX } from "./events.ts";
import { cronProblem } from "./cron.ts";
import { celProblem } from "./cel.ts";
import { toMs } from "./duration.ts";

/** Text that must parse as CEL (see `cel.ts`). */
const celText = (what: string) =>
  storableText(what).superRefine((source, ctx) => {
    const problem = celProblem(source);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });

/** The protocol version the executor sends and the SDK checks. */
export const PROTOCOL_VERSION = 1;

/** A JSON value as it crosses the wire. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** An error as it is stored and sent back into the function at the failing `await`. */
export const SerializedErrorSchema = z.object({
  name: z.string(),
  message: z.string(),
  stack: z.string().optional(),
});
export type SerializedError = z.infer<typeof SerializedErrorSchema>;

/** An event as stored by the executor and handed to functions. */
export const EventSchema = z.object({
  id: z.string(),
  name: z.string(),
  data: z.unknown(),
  ts: z.number(),
});
export type WireEvent = z.infer<typeof EventSchema>;

/** The step kinds, as recorded at each position of a run. */
export const StepKindSchema = z.enum(["run", "sleep", "wait", "send", "invoke"]);
export type StepKind = z.infer<typeof StepKindSchema>;

/**
 * A step the executor knows about, sent with every invocation in the order the function
 * first reached them (`position`). `completed` carries `output`, `failed` carries `error`
 * (thrown into the function at that `await`), `pending` means the executor is already
 * handling it (a sleep not yet over, a planned parallel branch, an open wait): the SDK
 * leaves that promise unresolved and does not report the step again.
 */
export const StoredStepSchema = z.object({
  id: z.string(),
  name: z.string(),
  kind: StepKindSchema,
  position: z.number().int().nonnegative(),
  status: z.enum(["completed", "failed", "pending"]),
  output: z.unknown().optional(),
  /**
   * Set on a completed step instead of `output` when the output was left out to keep the
   * request small (see {@link STEP_OUTPUTS_ROUTE}): its size as JSON, in bytes.
   */
  outputBytes: z.number().int().nonnegative().optional(),
  error: SerializedErrorSchema.optional(),
});
export type StoredStep = z.infer<typeof StoredStepSchema>;

/** The body of `POST /api/durable?fnId=…`. */
export const InvokeRequestSchema = z.object({
  version: z.literal(PROTOCOL_VERSION),
  run: z.object({
    id: z.string(),
    /**
     * The app the executor meant: signed with the body, so an invocation captured on its way to
     * one app is refused by another that shares the signing key and has a function of that ID.
     */
    appId: z.string(),
    functionId: z.string(),
    /** Attempt of the function body (0-based); for a `targetStep`, that step's attempt. */
    attempt: z.number().int().nonnegative(),
  }),
  /** The triggering event. */
  event: EventSchema,
  /** All events of the run (a single trigger today; batches later). */
  events: z.array(EventSchema),
  steps: z.array(StoredStepSchema),
  /**
   * When set, run only this step (a planned parallel branch or a retry) and report it;
   * do not execute any other step found on the way.
   */
  targetStep: z.string().optional(),
  /**
   * Set when the executor accepts checkpoints for this invocation: the app may run a
   * `step.run` it reaches, have its result committed with `POST /api/checkpoints` (carrying
   * `token`, the proof of this invocation's lease) and go on to the next step in the same
   * invocation. Never set with `targetStep`.
   */
  checkpoint: z.object({ token: z.string().min(1) }).optional(),
});
export type InvokeRequest = z.infer<typeof InvokeRequestSchema>;

/** Retry backoff of a function or a step: `initialMs * factor^n`, capped at `maxMs`, with jitter. */
export const BackoffSchema = z.object({
  initialMs: z.number().int().positive().optional(),
  maxMs: z.number().int().positive().optional(),
  factor: z.number().min(1).optional(),
});
export type BackoffConfig = z.infer<typeof BackoffSchema>;

/** How many times a function or a step is retried after its first attempt. */
export const RetriesSchema = z.number().int().min(0).max(20);

/** A step's own retry policy, overriding its function's. */
export const StepRetryPolicySchema = z.object({ retries: RetriesSchema.optional(), backoff: BackoffSchema.optional() });
export type StepRetryPolicy = z.infer<typeof StepRetryPolicySchema>;

const stepRef = {
  /** The step ID: the name, with `:N` appended when the name is used again in the run. */
  id: storableText("step id"),
  /** The name the user gave the step. */
  name: storableText("step name"),
  /** Where the function first reached the step (0-based, in order of discovery). */
  position: z.number().int().nonnegative(),
};

/** A `step.run` that ran in this invocation and returned `output`. */
export const StepRanOpSchema = z.object({ op: z.literal("step-ran"), ...stepRef, output: z.unknown() });
/**
 * A `step.run` that threw. `retriable: false` for NonRetriableError; `retryAt` for RetryAfterError.
 * `retries` and `backoff` are the step's own retry policy (`step.run({ id, retries, backoff })`),
 * sent with every failure so the executor applies it instead of the function's.
 */
export const StepFailedOpSchema = z.object({
  op: z.literal("step-failed"),
  ...stepRef,
  error: SerializedErrorSchema,
  retriable: z.boolean(),
  retryAt: z.string().datetime().optional(),
  ...StepRetryPolicySchema.shape,
});
/**
 * A `step.run` reached together with other new steps: the executor runs it in its own
 * invocation. Carries the step's own retry policy, if it has one, as `step-failed` does.
 */
export const StepPlannedOpSchema = z.object({ op: z.literal("step-planned"), ...stepRef, ...StepRetryPolicySchema.shape });
/** `step.sleep` / `step.sleepUntil`: wake the run at `until` (ISO time). */
export const SleepOpSchema = z.object({ op: z.literal("sleep"), ...stepRef, until: z.string().datetime() });
/** `step.waitForEvent`: resolve with the first matching event, or `null` at `timeoutAt`. */
export const WaitOpSchema = z.object({
  op: z.literal("wait"),
  ...stepRef,
  event: storableText("wait event").min(1),
  timeoutAt: z.string().datetime(),
  /** A dotted path (`data.orderId`) that must be equal in the triggering and awaited event. */
  match: storableText("match").optional(),
  /** A CEL expression over `event` (the trigger) and `async` (the candidate). */
  if: storableText("if").optional(),
});
/** `step.sendEvent`: the executor stores these events (IDs derived from run and step) and resolves with their IDs. */
export const SendOpSchema = z.object({
  op: z.literal("send"),
  ...stepRef,
  events: z.array(z.object({ name: z.string(), data: z.unknown().optional(), id: z.string().optional(), ts: z.number().optional() })),
});
/** `step.invoke`: start `functionId` (the executor's global ID) as a child run with `data`; resolve with its output. */
export const InvokeOpSchema = z.object({
  op: z.literal("invoke"),
  ...stepRef,
  functionId: storableText("functionId"),
  data: z.unknown().optional(),
  timeoutAt: z.string().datetime().optional(),
});

export const OpSchema = z.discriminatedUnion("op", [
  StepRanOpSchema,
  StepFailedOpSchema,
  StepPlannedOpSchema,
  SleepOpSchema,
  WaitOpSchema,
  SendOpSchema,
  InvokeOpSchema,
]);
export type Op = z.infer<typeof OpSchema>;
export type OpKind = Op["op"];

export const InvokeResponseSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("completed"), output: z.unknown() }),
  z.object({ type: z.literal("ops"), ops: z.array(OpSchema) }),
  z.object({
    type: z.literal("error"),
    error: SerializedErrorSchema,
    retriable: z.boolean(),
    retryAt: z.string().datetime().optional(),
  }),
]);
export type InvokeResponse = z.infer<typeof InvokeResponseSchema>;

/**
 * A trigger of a function: an event name, optionally filtered by a CEL expression over `event`,
 * or a cron pattern (see `cron.ts`): each tick starts one run with a {@link CRON_EVENT} event.
 */
export const TriggerSchema = z
  .object({ event: storableText("trigger event").min(1).optional(), if: celText("if").optional(), cron: storableText("cron").optional() })
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
  concurrency: ConcurrencySchema.optional(),
  /** Set on the companion function the SDK adds for an `onFailure` handler. */
  onFailureOf: z.string().optional(),
});
export type FunctionConfig = z.infer<typeof FunctionConfigSchema>;

/** The body of `GET /api/durable` and of the app's registration with the executor. */
export const AppDescriptionSchema = z.object({
  appId: storableText("appId").min(1),
  /** Where the executor reaches the app's `/api/durable`. */
  url: z.string().url(),
  sdk: storableText("sdk"),
  /** What the SDK understands beyond protocol version 1 ({@link APP_FEATURES}); absent from older SDKs. */
  features: z.array(storableText("feature")).max(32).optional(),
  functions: z.array(FunctionConfigSchema),
});

/**
 * Features an SDK declares when it registers, so an executor sends an app only what it reads:
 * an older SDK would take a step sent by size alone for a step that returned nothing.
 */
export const APP_FEATURES = {
  /** Completed steps may come with `outputBytes` alone, read back through {@link STEP_OUTPUTS_ROUTE}. */
  outputsBySize: "outputs-by-size",
} as const;
export type AppDescription = z.infer<typeof AppDescriptionSchema>;

/** The event a function's `onFailure` companion is triggered by. */
export const FUNCTION_FAILED_EVENT = "stepwise/function.failed";
/** The event a child run started by `step.invoke` is triggered by. */
export const FUNCTION_INVOKED_EVENT = "stepwise/function.invoked";

/** The executor's global ID of an app's function. */
export function globalFunctionId(appId: string, functionId: string): string {
  return `${appId}-${functionId}`;
}

/** Header names on the wire. */
export const HEADERS = {
  signature: "x-stepwise-signature",
  /** Set by `serve()` on every answer so the executor knows it reached an SDK. */
  sdk: "x-stepwise-sdk",
} as const;

/** The executor's route apps register on (`PUT /api/durable` posts the app's description there, signed). */
export const APPS_ROUTE = "/api/apps";

/** The executor's route for checkpoints: step results committed in the middle of an invocation, signed by the app. */
export const CHECKPOINT_ROUTE = "/api/checkpoints";

/**
 * The body of `POST /api/checkpoints`: one `step.run` result, committed before the function
 * goes on. Answered 200 `{ ok: true }` once durable, or 409 `{ error, refused }` when the
 * invocation may not go on (its lease is lost, the run ended, the step is already stored) or
 * the result must travel in the invocation's answer instead (it breaks a limit): either way
 * the app stops running steps and answers the invocation with the result as an op.
 */
export const CheckpointRequestSchema = z.object({
  version: z.literal(PROTOCOL_VERSION),
  run: z.object({ id: z.string(), appId: z.string(), functionId: z.string() }),
  /** The `checkpoint.token` of the invocation. */
  token: z.string().min(1),
  step: z.object({
    ...stepRef,
    output: z.unknown(),
    /** How long the step's code ran. */
    durationMs: z.number().nonnegative().max(1e9),
  }),
});
export type CheckpointRequest = z.infer<typeof CheckpointRequestSchema>;

/** Why a checkpoint was refused (409). */
export type CheckpointRefusal = "lease-lost" | "run-ended" | "step-stored" | "limit";

/**
 * The executor's route for stored step outputs an invocation left out. An invocation carries
 * outputs up to a budget (the executor's `limits.maxRequestOutputBytes`, 1 MB by default); the
 * rest come as `outputBytes` alone, and the app reads them here before its replay starts, so
 * the request stays the same size however much the run has stored (hosts cap requests: 6 MB
 * on AWS Lambda, 4.5 MB on Vercel). Signed by the app, like a checkpoint.
 */
export const STEP_OUTPUTS_ROUTE = "/api/step-outputs";

/** The body of `POST /api/step-outputs`: which steps of which run. */
export const StepOutputsRequestSchema = z.object({
  version: z.literal(PROTOCOL_VERSION),
  run: z.object({ id: z.string(), appId: z.string(), functionId: z.string() }),
  steps: z.array(z.string()).min(1).max(10_000),
});
export type StepOutputsRequest = z.infer<typeof StepOutputsRequestSchema>;

/** The answer (200): each asked step that is stored and completed, with its output; others are left out. */
export const StepOutputsResponseSchema = z.object({
  steps: z.array(z.object({ id: z.string(), output: z.unknown() })),
});
export type StepOutputsResponse = z.infer<typeof StepOutputsResponseSchema>;
