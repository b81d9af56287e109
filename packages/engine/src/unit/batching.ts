/**
 * `batchEvents`: an event of a batched function opens a batch with its own run, or joins the open
 * batch of its key (and has no run of its own). The batch's run starts `timeout` after its first
 * event, or at once when it fills up; its handler gets every event, in order of arrival.
 * Where each event goes is decided by the store under a lock on the key's batch (`placeInBatch`).
 */
import { evaluateCondition } from "../expressions.ts";
import { jsonBytes } from "../limits.ts";
import type { EventRecord, FunctionRecord } from "../records.ts";
import type { BatchPlace, PendingHere, StoreTx } from "../store.ts";
import { optionKey } from "./admission.ts";

/**
 * Places `event` in a batch of `fn` (`runId`: the run that opens one, if it comes to that); or
 * undefined when the batch's `if` does not hold for it: it runs alone, at once.
 */
export async function placeInBatch(
  tx: StoreTx,
  fn: FunctionRecord,
  event: EventRecord,
  runId: string,
  options: { maxBytes: number; pendingHere: PendingHere },
): Promise<BatchPlace | undefined> {
  const batch = fn.config.batchEvents;
  if (!batch || (batch.if !== undefined && !evaluateCondition(batch.if, { event }))) return undefined;
  // Without a value for the key, the event goes to the function's shared batch.
  const { hash } = await optionKey(batch.key, event);
  return tx.placeInBatch(
    { functionId: fn.id, key: hash, runId, eventId: event.id, bytes: jsonBytes(event), maxSize: batch.maxSize, maxBytes: options.maxBytes },
    options.pendingHere,
  );
}
