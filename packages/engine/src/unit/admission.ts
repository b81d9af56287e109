/**
 * Flow control at the door: whether an event that triggers a function starts a run of it, and
 * how. Each check takes its share in the transaction that creates the run (a key, a start of a
 * rate limit), so what it decides commits with the run or not at all, and two executors deciding
 * at once meet on the same row.
 *
 * - `idempotency`: a key already held by a run started within 24 hours starts nothing.
 * - `rateLimit`: over the limit, the run is created already ended, `skipped`, saying why.
 * - `throttle`: over the limit, the run is created as usual, its first invocation queued for
 *   when the limit allows (nothing is dropped).
 * - `debounce`: the run starts after the quiet period, and replaces (as `skipped`) the run of the
 *   key's previous event while that one has not started: `replaces` names it.
 * - `singleton`: while a run of the key is live, the new run is `skipped` saying which holds it
 *   (mode skip), or the live one is cancelled for it (mode cancel: `replaces` names it).
 *
 * `debounce` cannot be combined with `rateLimit`, `throttle` or `singleton` (the configuration
 * refuses it: see `conflictingOptions`), so at most one check here delays or replaces.
 */
import { sha256Hex, toMs } from "@stepwise/protocol";
import { evaluateValue } from "../expressions.ts";
import type { EventRecord, FunctionRecord } from "../records.ts";
import type { PendingHere, StoreTx } from "../store.ts";
import { formatDuration } from "../log.ts";

/** How long an idempotency key holds back further runs of its function: 24 hours. */
export const IDEMPOTENCY_WINDOW_MS = 24 * 3_600_000;

/** A live run a new one ends (singleton in cancel mode, debounce): how it ends, and why. */
export interface Replaced {
  runId: string;
  status: "cancelled" | "skipped";
  reason: string;
}

export type Admission =
  /**
   * Start the run, `delayMs` from now when throttled or debounced (`why` says which); `warning`
   * says what could not be checked; `replaces` is a run it ends.
   */
  | { start: true; delayMs?: number; why?: string; warning?: string; replaces?: Replaced }
  /** Start nothing (a duplicate); `line` says why. */
  | { start: false; line: string }
  /** Create the run already ended as `skipped`, with `reason`. */
  | { start: "skip"; reason: string };

/** Whether `fn` has any of the checks here, or batches its events: most functions do neither, and take no step for them. */
export function needsAdmission(fn: FunctionRecord): boolean {
  const { idempotency, rateLimit, throttle, singleton, debounce, batchEvents } = fn.config;
  return (
    idempotency !== undefined || rateLimit !== undefined || throttle !== undefined || singleton !== undefined || debounce !== undefined || batchEvents !== undefined
  );
}

/**
 * Decides how `event` starts run `runId` of `fn`. `pendingHere` tells what the transaction knows
 * of a run the record cannot tell yet (see `StoreTx.takeDebounce`).
 */
export async function admit(tx: StoreTx, fn: FunctionRecord, event: EventRecord, runId: string, pendingHere: PendingHere): Promise<Admission> {
  let warning: string | undefined;
  const { idempotency, rateLimit, singleton, debounce } = fn.config;
  if (idempotency !== undefined) {
    const key = keyOf(idempotency, event);
    if (key === undefined) {
      warning = `its idempotency key (${idempotency}) has no value for event ${event.id}; the run starts without one`;
    } else {
      const holder = await tx.reserveIdempotencyKey(fn.id, await sha256Hex(key), runId, IDEMPOTENCY_WINDOW_MS);
      if (holder !== runId) return { start: false, line: `event ${event.id} (${event.name}) starts no run of ${fn.id}: idempotency key ${shown(key)} is held by run ${holder}` };
    }
  }
  if (rateLimit) {
    const key = await optionKey(rateLimit.key, event);
    const periodMs = toMs(rateLimit.period);
    const intervalMs = periodMs / rateLimit.limit;
    if (!(await tx.takeRateLimit(fn.id, key.hash, intervalMs, periodMs - intervalMs))) {
      return { start: "skip", reason: `rateLimit: ${rateLimit.limit} run(s) per ${rateLimit.period}${key.named ? ` for ${key.named}` : ""} already started` };
    }
  }
  const started = (more: Omit<Extract<Admission, { start: true }>, "start">): Admission => ({ start: true, ...more, ...(warning !== undefined && { warning }) });
  if (debounce) {
    const key = await optionKey(debounce.key, event);
    const { replaces, openedMsAgo } = await tx.takeDebounce(fn.id, key.hash, runId, pendingHere);
    // The quiet period from now, but no later than the timeout from the burst's first event.
    const periodMs = toMs(debounce.period);
    const delayMs = Math.max(0, Math.min(periodMs, debounce.timeout === undefined ? periodMs : toMs(debounce.timeout) - openedMsAgo));
    const per = key.named ? ` (${key.named})` : "";
    const why = delayMs < periodMs ? `debounced, starts in ${formatDuration(delayMs)} (its burst's timeout of ${debounce.timeout})` : `debounced, starts in ${formatDuration(delayMs)} unless a later event${per} replaces it`;
    if (replaces === null) return started({ delayMs, why });
    return started({ delayMs, why, replaces: { runId: replaces, status: "skipped", reason: `debounce: replaced by run ${runId} for the later event ${event.id}${per}` } });
  }
  let replaces: Replaced | undefined;
  if (singleton) {
    const key = await optionKey(singleton.key, event);
    const holder = await tx.takeSingleton(fn.id, key.hash, runId, singleton.mode === "cancel", pendingHere);
    if (holder !== null && singleton.mode === "skip") return { start: "skip", reason: `singleton: run ${holder}${key.named ? ` for ${key.named}` : ""} is still running` };
    if (holder !== null) replaces = { runId: holder, status: "cancelled", reason: `singleton: replaced by run ${runId}` };
  }
  // Last: a run dropped by the checks above spends no start of the throttle.
  const throttled = await throttleStart(tx, fn, event);
  if (typeof throttled === "string") return { start: "skip", reason: throttled };
  const delayMs = throttled;
  return started({ ...(delayMs > 0 && { delayMs, why: `throttled, starts in ${formatDuration(delayMs)}` }), ...(replaces !== undefined && { replaces }) });
}

/**
 * `throttle`: how long from now the run for `event` may start (0 at once), taking a start of
 * the function's limit; or, when it could only start past its `timeouts.start`, why it is
 * skipped. Runs an operator starts again (replays, a paused function's held runs) take their
 * starts too: what the throttle protects is called the same either way.
 */
export async function throttleStart(tx: StoreTx, fn: FunctionRecord, event: EventRecord): Promise<number | string> {
  const { throttle } = fn.config;
  if (!throttle) return 0;
  const key = await optionKey(throttle.key, event);
  const intervalMs = toMs(throttle.period) / throttle.limit;
  // A run that could only start past its timeouts.start takes no start (it would be cancelled then, and the starts after it held back for nothing).
  const start = fn.config.timeouts?.start;
  const taken = await tx.takeThrottle(fn.id, key.hash, intervalMs, ((throttle.burst ?? 1) - 1) * intervalMs, start === undefined ? undefined : toMs(start));
  return taken ?? `throttle: ${throttle.limit} run(s) per ${throttle.period} could not start this run within its timeouts.start of ${start}`;
}

/**
 * A CEL key of `event` as JSON text (so `"1"` and `1` differ, and NUL or a lone surrogate is
 * escaped); undefined when the expression has no value for this event (a missing field). The
 * store keeps its SHA-256, whatever its length or characters.
 */
export function keyOf(source: string, event: EventRecord): string | undefined {
  const value = evaluateValue(source, { event });
  if (value === undefined || value === null) return undefined;
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
}

/**
 * The state key an option with an optional CEL `key` (rateLimit, throttle, singleton, debounce,
 * batchEvents) takes for `event`: the SHA-256 of the key's value, or of "" (the function's shared
 * key) without a `key` or without a value for it; `named` is how a message names it (undefined
 * without a `key`).
 */
export async function optionKey(source: string | undefined, event: EventRecord): Promise<{ hash: string; named?: string }> {
  if (source === undefined) return { hash: await sha256Hex("") };
  const key = keyOf(source, event) ?? "";
  return { hash: await sha256Hex(key), named: key === "" ? `${source} (no value: the shared key)` : `${source} = ${shown(key)}` };
}

/** A key as a log line shows it: its JSON, cut at 200 characters. */
function shown(key: string): string {
  return key.length > 200 ? `${key.slice(0, 200)}…` : key;
}
