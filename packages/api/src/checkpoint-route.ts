/**
 * `POST /api/checkpoints` as a plain function of the signature header and the body bytes, so
 * it runs the same behind Hono (the Worker executor, the general API) and straight on node:http
 * (the Node executor's hot path: a checkpointed step is one such request, and going through web
 * Request and Response objects cost about 0.1 ms of CPU per request more).
 *
 * Signed like a registration, by the key of the app the run belongs to. No replay memory is
 * needed: a checkpoint replayed finds its step stored (or its lease gone) and changes nothing.
 * A batch (several invocations' checkpoints, sent by an app while its earlier ones were on the
 * way) hands each checkpoint to the same path, so each is committed or refused exactly as if it
 * had come alone, and answers each one's outcome.
 */
import { CHECKPOINT_ROUTE, CheckpointBatchSchema, issuesText, type CheckpointBatchAnswer, type CheckpointOutcome } from "@stepwise/protocol";
import { CheckpointRefused, InputError, type Executor } from "@stepwise/engine";
import { verifySignedByApp, type SigningKeys } from "./signed.ts";

/** What the route answers: a status and a JSON body. */
export interface PlainAnswer {
  status: 200 | 400 | 401 | 403 | 404 | 409 | 410 | 413;
  body: { ok: true } | CheckpointBatchAnswer | { error: string; refused?: string };
}

/** `text` reads the body as UTF-8 (an `InputError` when it is not, or too large); it is read only once the signature header has the right shape. */
export type CheckpointHandler = (request: { signature: string | undefined; text: () => Promise<string> }) => Promise<PlainAnswer>;

/** A batch names its app at the top; a single checkpoint in its run. */
const isBatch = (body: unknown) => typeof body === "object" && body !== null && "checkpoints" in body;
const appIdOf = (body: unknown) => (isBatch(body) ? (body as { appId?: unknown }).appId : (body as { run?: { appId?: unknown } } | null)?.run?.appId);

/**
 * The checkpoint route, for one checkpoint or a batch; unexpected errors (the store down) are
 * thrown for the caller's 500, a batch's too: the app then answers each invocation with its
 * result, and a step a batch did commit keeps its first result.
 */
export function createCheckpointHandler(executor: Executor, keys: SigningKeys): CheckpointHandler {
  return async ({ signature, text }) => {
    try {
      const signed = await verifySignedByApp(keys, "Checkpoint", CHECKPOINT_ROUTE, signature, text, appIdOf, "Not a Stepwise checkpoint: run.appId (or a batch's appId) is missing");
      if ("refusal" in signed) return signed.refusal;
      if (isBatch(signed.body)) return { status: 200, body: { ok: true, outcomes: await commitBatch(executor, signed.body, signed.appId as string) } };
      await executor.checkpoint(signed.body, signed.appId as string);
      return { status: 200, body: { ok: true } };
    } catch (error) {
      const outcome = refusalOf(error);
      if (!outcome) throw error;
      const { status, ...body } = outcome;
      return { status, body };
    }
  };
}

/** Each checkpoint of a batch committed or refused on its own, as if it had come alone. */
async function commitBatch(executor: Executor, body: unknown, appId: string): Promise<CheckpointOutcome[]> {
  const batch = CheckpointBatchSchema.safeParse(body);
  if (!batch.success) throw new InputError(`Not a Stepwise checkpoint batch: ${issuesText(batch.error.issues, "body")}`);
  const settled = await Promise.allSettled(batch.data.checkpoints.map((one) => executor.checkpoint(one, appId)));
  return settled.map((result) => {
    if (result.status === "fulfilled") return { status: 200 };
    const outcome = refusalOf(result.reason);
    if (!outcome) throw result.reason;
    return outcome;
  });
}

/** The answer a checkpoint's own request gets for `error`; undefined for one the route does not expect. */
function refusalOf(error: unknown): Exclude<CheckpointOutcome, { status: 200 }> | undefined {
  if (error instanceof CheckpointRefused) return { status: 409, error: error.message, refused: error.refused };
  if (error instanceof InputError) return { status: error.status, error: error.message };
  return undefined;
}

/** What both transports answer (413) for a body over `maxBytes`. */
export function tooLargeMessage(maxBytes: number): string {
  return `Request body too large: the limit is ${maxBytes} bytes`;
}
