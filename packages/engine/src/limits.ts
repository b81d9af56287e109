/** Size and count limits, each configurable on the executor. */
export interface Limits {
  /** Largest event payload (the JSON of one event). */
  maxEventBytes: number;
  /** Most events one request to the events API may carry (they are stored in one transaction). */
  maxEventsPerRequest: number;
  /** Largest JSON output of one step. */
  maxStepOutputBytes: number;
  /** Most steps one run may reach. */
  maxStepsPerRun: number;
  /** Largest answer accepted from an app (outputs and ops of one invocation). */
  maxResponseBytes: number;
  /** Most JSON one run may hold in step outputs and errors. */
  maxRunStateBytes: number;
  /**
   * Most step output JSON one invocation request carries. Outputs past it are left out (sent
   * as their size alone) and the app reads them from the executor before it replays, so the
   * request stays under what serverless hosts accept (6 MB on AWS Lambda) whatever the run holds.
   */
  maxRequestOutputBytes: number;
  /**
   * Most event JSON one batch (`batchEvents`) holds: every invocation of its run carries all of
   * it, so a batch that an event would take past this starts as it is, and the event opens the next.
   */
  maxBatchBytes: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxEventBytes: 512 * 1024,
  maxEventsPerRequest: 1_000,
  maxStepOutputBytes: 4 * 1024 * 1024,
  maxStepsPerRun: 1_000,
  maxResponseBytes: 16 * 1024 * 1024,
  maxRunStateBytes: 32 * 1024 * 1024,
  maxRequestOutputBytes: 1024 * 1024,
  maxBatchBytes: 2 * 1024 * 1024,
};

/**
 * Deepest nesting of arrays and objects a stored value may have. JSON.parse reads deeper
 * documents than JSON.stringify can write back (it runs out of stack a few thousand levels
 * down), so a deeper value could be received but never stored or sent again.
 */
export const MAX_JSON_DEPTH = 1_000;

/** A value that cannot be stored as JSON: nested too deeply. */
export class NotStorableError extends Error {
  override name = "NotStorableError";
}

/** Byte length of a value as JSON (UTF-8). Throws {@link NotStorableError} for a value nested deeper than {@link MAX_JSON_DEPTH}. */
export function jsonBytes(value: unknown): number {
  const depth = jsonDepth(value);
  if (depth > MAX_JSON_DEPTH) throw new NotStorableError(`it is nested ${depth} levels deep; the limit is ${MAX_JSON_DEPTH}`);
  const text = JSON.stringify(value ?? null);
  return new TextEncoder().encode(text).byteLength;
}

/** Nesting depth of a JSON value, without recursion (so any depth can be measured). */
function jsonDepth(value: unknown): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (current === null || typeof current !== "object") continue;
    deepest = Math.max(deepest, depth + 1);
    if (deepest > MAX_JSON_DEPTH) return deepest;
    for (const child of Object.values(current)) stack.push([child, depth + 1]);
  }
  return deepest;
}

/** "4 MB", "512 KB": limits as people read them. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${+(bytes / 1024 / 1024).toFixed(1)} MB`;
  if (bytes >= 1024) return `${+(bytes / 1024).toFixed(1)} KB`;
  return `${bytes} B`;
}
