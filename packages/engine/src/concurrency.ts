/**
 * Concurrency limits: at most `limit` steps of a function (per key value, when it has a key)
 * execute at once, across every executor. What holds a slot is an invocation out to the app: a
 * leased `invoke` job of the run. A sleeping or waiting run has no such job, so it holds none.
 *
 * A run's slots (key and limit) are fixed when it starts and copied onto each of its invocation
 * jobs. The store counts and grants them at the claim (see `Queue.claim`), exactly, since the
 * record holds every lease; so the engine only has three rules to keep:
 * - a continuation (the next invocation, written leased in the commit of the one before) keeps
 *   the slot of the invocation it follows, which only an invocation holds: a timer's wake-up or
 *   a run's first invocation is queued for a claim instead (`mayLeaseNext`);
 * - an invocation that ends without a continuation frees its slots, and says so to the queue
 *   (`Queue.slotsFreed`), so runs waiting for them are claimed at once;
 * - a run that ends while one of its invocations is out (cancelled, or another branch failed)
 *   leaves that invocation's job to its worker: the step is still running in the app, so the
 *   slot stays taken until the worker hears the answer (and drops it) or its lease runs out;
 * - the keys are hashed: a key's value may be long, or hold any character.
 */
import { concurrencyLimits, sha256Hex } from "@stepwise/protocol";
import { keyOf } from "./unit/admission.ts";
import type { ConcurrencySlot, EventRecord, FunctionRecord, JobRecord } from "./records.ts";

/** The slots a run of `fn` for `event` takes (none when the function has no concurrency limit). */
export async function concurrencySlots(fn: FunctionRecord, event: EventRecord): Promise<ConcurrencySlot[] | undefined> {
  const limits = concurrencyLimits(fn.config.concurrency);
  if (limits.length === 0) return undefined;
  const slots: ConcurrencySlot[] = [];
  for (const { limit, key, scope } of limits) {
    const owner = scope === "app" ? `app:${fn.appId}` : `fn:${fn.id}`;
    // Without a value for the key, the run counts against the limit shared by all such runs.
    const value = key === undefined ? undefined : (keyOf(key, event) ?? "");
    const slot = { key: value === undefined ? owner : `${owner}:${await sha256Hex(value)}`, limit };
    // Two limits on one key (the same key value twice) are one slot, at the lower limit.
    const same = slots.find((other) => other.key === slot.key);
    if (same) same.limit = Math.min(same.limit, slot.limit);
    else slots.push(slot);
  }
  return slots;
}

/** The concurrency keys `job` held while it ran: freed when it ends without a continuation. */
export function heldKeys(job: JobRecord): string[] {
  return job.kind === "invoke" ? (job.concurrency ?? []).map((slot) => slot.key) : [];
}
