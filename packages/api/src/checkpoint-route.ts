/**
 * `POST /api/checkpoints` as a plain function of the signature header and the body bytes, so
 * it runs the same behind Hono (the Worker executor, the general API) and straight on node:http
 * (the Node executor's hot path: a checkpointed step is one such request, and going through web
 * Request and Response objects cost about 0.1 ms of CPU per request more).
 *
 * Signed like a registration, by the key of the app the run belongs to. No replay memory is
 * needed: a checkpoint replayed finds its step stored (or its lease gone) and changes nothing.
 */
import { CHECKPOINT_ROUTE } from "@stepwise/protocol";
import { CheckpointRefused, InputError, type Executor } from "@stepwise/engine";
import { verifySignedByApp, type SigningKeys } from "./signed.ts";

/** What the route answers: a status and a JSON body. */
export interface PlainAnswer {
  status: 200 | 400 | 401 | 403 | 404 | 409 | 410 | 413;
  body: { ok: true } | { error: string; refused?: string };
}

/** `text` reads the body as UTF-8 (an `InputError` when it is not, or too large); it is read only once the signature header has the right shape. */
export type CheckpointHandler = (request: { signature: string | undefined; text: () => Promise<string> }) => Promise<PlainAnswer>;

/** The checkpoint route; unexpected errors (the store down) are thrown for the caller's 500. */
export function createCheckpointHandler(executor: Executor, keys: SigningKeys): CheckpointHandler {
  const appIdOf = (body: unknown) => (body as { run?: { appId?: unknown } } | null)?.run?.appId;
  return async ({ signature, text }) => {
    try {
      const signed = await verifySignedByApp(keys, "Checkpoint", CHECKPOINT_ROUTE, signature, text, appIdOf, "Not a Stepwise checkpoint: run.appId is missing");
      if ("refusal" in signed) return signed.refusal;
      await executor.checkpoint(signed.body, signed.appId as string);
      return { status: 200, body: { ok: true } };
    } catch (error) {
      if (error instanceof CheckpointRefused) return { status: 409, body: { error: error.message, refused: error.refused } };
      if (error instanceof InputError) return { status: error.status, body: { error: error.message } };
      throw error;
    }
  };
}

/** What both transports answer (413) for a body over `maxBytes`. */
export function tooLargeMessage(maxBytes: number): string {
  return `Request body too large: the limit is ${maxBytes} bytes`;
}
