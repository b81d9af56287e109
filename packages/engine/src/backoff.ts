/**
 * Retry backoff: exponential with jitter, one pure function used for every retry.
 *
 * Defaults (documented in the README): first retry after about 1 s, doubling each time,
 * capped at 10 minutes. The delay is drawn uniformly from [d/2, d] ("equal jitter"), so
 * retries of many runs that failed together spread out instead of stampeding the app.
 */
import type { BackoffConfig } from "@stepwise/protocol";

export const DEFAULT_BACKOFF: Required<BackoffConfig> = { initialMs: 1_000, maxMs: 600_000, factor: 2 };

/**
 * Layers backoff settings over the defaults, later ones winning. A field that is missing,
 * `undefined` or not a positive number is ignored, so an unset setting can never make a
 * delay `NaN` (which would turn every retry into an error, and the retries endless).
 */
export function resolveBackoff(...layers: Array<BackoffConfig | undefined>): Required<BackoffConfig> {
  const resolved = { ...DEFAULT_BACKOFF };
  for (const layer of layers) {
    if (!layer) continue;
    for (const key of ["initialMs", "maxMs", "factor"] as const) {
      const value = layer[key];
      if (typeof value === "number" && Number.isFinite(value) && value > 0) resolved[key] = value;
    }
  }
  resolved.factor = Math.max(1, resolved.factor);
  return resolved;
}

/** Delay before retry number `retry` (0 for the first retry). `random` is injectable for tests. */
export function backoffDelay(retry: number, config: BackoffConfig = {}, random: () => number = Math.random): number {
  const { initialMs, maxMs, factor } = resolveBackoff(config);
  const ceiling = Math.min(maxMs, initialMs * factor ** Math.max(0, retry));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
