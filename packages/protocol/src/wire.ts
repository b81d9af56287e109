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
import { BackoffSchema, FunctionConfigSchema, RetriesSchema } from "./function-config.ts";
import { SignalConflictSchema, SignalNameSchema } from "./signals.ts";

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

/** The longest `waitForEvent` look-back: a week, the executor's default retention of events. */
export const MAX_LOOKBACK_MS = 7 * 24 * 3_600_000;

/** The step kinds, as recorded at each position of a run. */
export const StepKindSchema = z.enum(["run", "sleep", "wait", "send", "invoke", "callback", "fetch", "ai"]);
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

/**
 * A stored step as it crosses the wire: {@link StoredStepSchema} with the fields that hold their
 * usual value left out, for an SDK that declared {@link APP_FEATURES.compactSteps} (an older one
 * always gets every field). `name` is left out when it is the ID, `position` when it is the
 * step's index in the request's `steps`, `kind` when it is `"run"`, `status` when it is
 * `"completed"`. W1's step goes as `{"id":"s12","output":12}` instead of 85 bytes: two thirds
 * less of what every invocation of a long run without checkpoints carries, and stringifies,
 * signs, sends, checks and parses.
 */
const WireStepSchema = StoredStepSchema.extend({
  name: z.string().optional(),
  kind: StepKindSchema.default("run"),
  position: z.number().int().nonnegative().optional(),
  status: StoredStepSchema.shape.status.default("completed"),
});
export type WireStep = z.input<typeof WireStepSchema>;

/**
 * Fills in each step's name and position (see {@link WireStepSchema}). zod built these objects
 * for this parse, so they are filled in place: nothing is copied. An `overwrite`, not a
 * `transform`: through a transform, zod's check of 500 steps took up to four times as long.
 */
function fillIn(steps: Array<z.output<typeof WireStepSchema>>): Array<z.output<typeof WireStepSchema>> {
  for (let index = 0; index < steps.length; index++) {
    const step = steps[index]!;
    step.name ??= step.id;
    step.position ??= index;
  }
  return steps;
}

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
  /** All events of the run, in order of arrival: a batch's (`batchEvents`), else `[event]`. */
  events: z.array(EventSchema),
  /** Every field of each step, or the compact form ({@link WireStepSchema}); parsed, every field. */
  steps: z.array(WireStepSchema).overwrite(fillIn),
  /**
   * When set, run only this step (a planned parallel branch or a retry) and report it;
   * do not execute any other step found on the way.
   */
  targetStep: z.string().optional(),
  /**
   * Set when the executor accepts checkpoints for this invocation: the app may run a
   * `step.run` it reaches, have its result committed with `POST /api/checkpoints` (carrying
   * `token`, the proof of this invocation's lease) and go on to the next step in the same
   * invocation. Never set with `targetStep`. `batches`: the executor also takes several
   * checkpoints, of any of the app's invocations, in one request ({@link CheckpointBatchSchema}).
   */
  checkpoint: z.object({ token: z.string().min(1), batches: z.boolean().optional() }).optional(),
});
/** An invocation as the SDK reads it, parsed with {@link InvokeRequestSchema}: every field of each step filled in. */
export type InvokeRequest = Omit<z.output<typeof InvokeRequestSchema>, "steps"> & { steps: StoredStep[] };
/** An {@link InvokeRequest} as the executor sends it: its steps may be in the compact form. */
export type InvokeRequestWire = z.input<typeof InvokeRequestSchema>;

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

/** More tokens than any call spends: a count past it is a provider's mistake, not recorded. */
export const MAX_TOKEN_COUNT = 1e12;

/** Tokens a model call spent, as a step records them (`step.ai.infer`, `step.ai.wrap`). */
export const TokenUsageSchema = z.object({
  model: z.string().max(256).optional(),
  inputTokens: z.number().int().nonnegative().max(MAX_TOKEN_COUNT),
  outputTokens: z.number().int().nonnegative().max(MAX_TOKEN_COUNT),
});
export type TokenUsage = z.infer<typeof TokenUsageSchema>;

/**
 * The tokens a `usage` object reports (a provider's answer, an SDK call's result), under the
 * first name of each list that holds a count, with `model` when it is a short string; undefined
 * when either count is missing. Counts past {@link MAX_TOKEN_COUNT} are not counts.
 */
export function readTokenUsage(usage: unknown, names: { input: readonly string[]; output: readonly string[] }, model?: unknown): TokenUsage | undefined {
  if (typeof usage !== "object" || usage === null) return undefined;
  const count = (keys: readonly string[]) =>
    keys.map((key) => (usage as Record<string, unknown>)[key]).find((n): n is number => typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= MAX_TOKEN_COUNT);
  const inputTokens = count(names.input);
  const outputTokens = count(names.output);
  if (inputTokens === undefined || outputTokens === undefined) return undefined;
  return { inputTokens, outputTokens, ...(typeof model === "string" && model.length <= 256 && { model }) };
}

/** A `step.run` that ran in this invocation and returned `output` (a `step.ai.wrap` with the tokens it spent). */
export const StepRanOpSchema = z.object({ op: z.literal("step-ran"), ...stepRef, output: z.unknown(), usage: TokenUsageSchema.optional() });
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
  /**
   * Also match events stored up to this long before the wait began (ms), the earliest first;
   * without it, only those stored since the invocation that reached the wait became due.
   */
  lookbackMs: z.number().int().positive().max(MAX_LOOKBACK_MS).optional(),
});
/**
 * `step.waitForSignal`: resolve with the signal sent to `signal` (stored as a `stepwise/signal`
 * event), or `null` at `timeoutAt`. One run waits for a signal at a time: `onConflict` says what
 * this wait does when another already does (default `fail`: this step fails).
 */
export const WaitSignalOpSchema = z.object({
  op: z.literal("wait-signal"),
  ...stepRef,
  signal: SignalNameSchema,
  timeoutAt: z.string().datetime(),
  onConflict: SignalConflictSchema.optional(),
});
/**
 * `step.createCallback`: the executor mints a callback URL that expires at `expiresAt` (at most
 * 7 days on) and completes the step with `{ id, url, expiresAt }` at once.
 */
export const CallbackOpSchema = z.object({ op: z.literal("callback"), ...stepRef, expiresAt: z.string().datetime() });
/**
 * `step.waitForCallback`: resolve with the first POST to the run's callback `callback` (its
 * `{ callback, body, headers }`, stored as a `stepwise/callback` event, before the wait began or
 * after), or `null` at `timeoutAt`.
 */
export const WaitCallbackOpSchema = z.object({ op: z.literal("wait-callback"), ...stepRef, callback: storableText("callback"), timeoutAt: z.string().datetime() });
/** The longest a `step.fetch` request may take before the executor gives up on it (an attempt). */
export const MAX_FETCH_TIMEOUT_MS = 2 * 3_600_000;
/** How long a `step.fetch` request may take when its step says nothing. */
export const DEFAULT_FETCH_TIMEOUT_MS = 5 * 60_000;

/** A request `step.fetch` has the executor make. The body is text (send binary as base64 of your own). */
export const FetchRequestSchema = z.object({
  url: z.string().url(),
  method: z.string().min(1).max(16).optional(),
  headers: z.record(z.string(), z.string()).optional(),
  body: z.string().optional(),
  timeoutMs: z.number().int().positive().max(MAX_FETCH_TIMEOUT_MS).optional(),
});
export type FetchRequest = z.infer<typeof FetchRequestSchema>;

/** What a `step.fetch` step stores: the response, its body as text or, when it is not text, base64. */
export const FetchResponseSchema = z.object({
  status: z.number().int(),
  statusText: z.string(),
  headers: z.record(z.string(), z.string()),
  body: z.string(),
  bodyEncoding: z.enum(["text", "base64"]),
  /** The URL answered from, after redirects. */
  url: z.string(),
  /**
   * Every `Set-Cookie` of the answer, in order. `headers` holds one value per name (for
   * `set-cookie`, the last), and cookies cannot be joined into one value: an expiry date holds a comma.
   */
  setCookie: z.array(z.string()).optional(),
});
export type FetchResponse = z.infer<typeof FetchResponseSchema>;

/**
 * `step.fetch`: the invocation ends, the executor makes `request` (retried on a network error,
 * a 429 or a 5xx per the step's retry policy, waiting a `Retry-After` exactly), stores the
 * response and invokes the function again. Carries the step's own retry policy, as `step-failed` does.
 */
export const FetchOpSchema = z.object({
  op: z.literal("fetch"),
  ...stepRef,
  request: FetchRequestSchema,
  /**
   * A model call (`step.ai.infer`, a step of kind `ai`): the answer must be JSON, which the step
   * resolves to, with the tokens it reports recorded; an error status other than 429 or 5xx
   * fails the step with the provider's message.
   */
  ai: z.object({ model: z.string().min(1).max(256) }).optional(),
  ...StepRetryPolicySchema.shape,
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
  WaitSignalOpSchema,
  CallbackOpSchema,
  WaitCallbackOpSchema,
  FetchOpSchema,
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


/** The body of `GET /api/durable` and of the app's registration with the executor. */
export const AppDescriptionSchema = z.object({
  appId: storableText("appId").min(1),
  /** Where the executor reaches the app's `/api/durable`. */
  url: z.string().url(),
  sdk: storableText("sdk"),
  /** What the SDK understands beyond protocol version 1 ({@link APP_FEATURES}); absent from older SDKs. */
  features: z.array(storableText("feature")).max(32).optional(),
  /**
   * The version of the code this deployment serves (a git SHA, a platform's deployment ID, or
   * derived from the functions' configuration). Each run records the version it started on.
   */
  version: z
    .string()
    .regex(/^[\x21-\x7e]{1,200}$/, "version must be 1 to 200 printable ASCII characters without spaces (a git SHA, a deployment ID)")
    .optional(),
  /**
   * This deployment's own URL, which keeps serving this version after later deploys (a Vercel
   * deployment URL, a Workers version's preview URL): runs that started on this version are
   * invoked there while it answers, and on `url` once it is gone. Absent: `url` serves them all.
   */
  deploymentUrl: storableText("deploymentUrl").max(2_048).url().optional(),
  functions: z.array(FunctionConfigSchema),
});

/**
 * Features an SDK declares when it registers, so an executor sends an app only what it reads:
 * an older SDK would take a step sent by size alone for a step that returned nothing.
 */
export const APP_FEATURES = {
  /** Completed steps may come with `outputBytes` alone, read back through {@link STEP_OUTPUTS_ROUTE}. */
  outputsBySize: "outputs-by-size",
  /** Stored steps may come without the fields that hold their usual value (see `WireStepSchema`). */
  compactSteps: "compact-steps",
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
    usage: TokenUsageSchema.optional(),
  }),
});
export type CheckpointRequest = z.infer<typeof CheckpointRequestSchema>;

/** Most checkpoints one batch carries. */
export const MAX_CHECKPOINT_BATCH = 64;

/**
 * The body of `POST /api/checkpoints` carrying several checkpoints of one app, each of its own
 * invocation (sent when the executor's offer says `batches`): an app with many invocations at
 * once sends the checkpoints that wait while its earlier ones are on the way in one request,
 * instead of one request each. Each is committed or refused on its own, as if sent alone; the
 * answer (200) lists their outcomes in order ({@link CheckpointBatchAnswer}).
 */
export const CheckpointBatchSchema = z.object({
  version: z.literal(PROTOCOL_VERSION),
  /** The app all of them belong to: the one whose key signed the request. */
  appId: z.string(),
  checkpoints: z.array(z.unknown()).min(1).max(MAX_CHECKPOINT_BATCH),
});
export type CheckpointBatch = { version: typeof PROTOCOL_VERSION; appId: string; checkpoints: CheckpointRequest[] };

/** One checkpoint's outcome in a batch: what its own request would have been answered. */
export type CheckpointOutcome = { status: 200 } | { status: 400 | 403 | 404 | 409 | 410 | 413; error: string; refused?: CheckpointRefusal };

/** The answer to a batch: `{ ok: true, outcomes }`, one per checkpoint, in the batch's order. */
export interface CheckpointBatchAnswer {
  ok: true;
  outcomes: CheckpointOutcome[];
}

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
