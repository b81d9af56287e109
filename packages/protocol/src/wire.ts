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
 *
 * This module holds the request and what both directions share; the answer's ops are in
 * `ops.ts`, the app's description in `app-description.ts`, and the executor's routes an app
 * calls during an invocation (checkpoints, left-out outputs) in `invocation-routes.ts`.
 */
import { z } from "zod";

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
 * usual value left out, for an SDK that declared `APP_FEATURES.compactSteps` (an older one
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

/** Header names on the wire. */
export const HEADERS = {
  signature: "x-stepwise-signature",
  /** Set by `serve()` on every answer so the executor knows it reached an SDK. */
  sdk: "x-stepwise-sdk",
} as const;
