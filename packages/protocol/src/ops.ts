/**
 * The app's answer to an invocation ({@link InvokeResponse}): the function completed, threw, or
 * reached steps with no stored result, each an op that says what the executor must do next
 * (store a result, schedule a sleep, open a wait, make a request, start a child run, ...).
 */
import { z } from "zod";
import { storableText } from "./text.ts";
import { BackoffSchema, RetriesSchema } from "./function-config.ts";
import { SignalConflictSchema, SignalNameSchema } from "./signals.ts";
import { MAX_LOOKBACK_MS, SerializedErrorSchema } from "./wire.ts";

/** A step's own retry policy, overriding its function's. */
export const StepRetryPolicySchema = z.object({ retries: RetriesSchema.optional(), backoff: BackoffSchema.optional() });
export type StepRetryPolicy = z.infer<typeof StepRetryPolicySchema>;

/** The fields every op and checkpoint names its step by. */
export const stepRef = {
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
