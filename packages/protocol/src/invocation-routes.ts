/**
 * The executor's routes an app calls while an invocation runs, signed with the app's key:
 * checkpoints (a step's result committed before the function goes on) and the stored outputs an
 * invocation left out.
 */
import { z } from "zod";
import { stepRef, TokenUsageSchema } from "./ops.ts";
import { PROTOCOL_VERSION } from "./wire.ts";

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
