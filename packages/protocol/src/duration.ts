/** Durations as users write them: milliseconds, or "500ms", "30s", "5m", "2h", "1d", "1h30m". */
export type Duration = number | `${number}${DurationUnit}` | (string & {});
export type DurationUnit = "ms" | "s" | "m" | "h" | "d" | "w";

const UNIT_MS: Record<DurationUnit, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const PART = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)/gy;

/** Converts a {@link Duration} to milliseconds; throws a `RangeError` that says what is wrong. */
export function toMs(duration: Duration): number {
  if (typeof duration === "number") {
    if (!Number.isFinite(duration) || duration < 0) throw new RangeError(`Invalid duration ${duration}: expected milliseconds >= 0`);
    return duration;
  }
  const text = duration.replace(/\s+/g, "");
  let total = 0;
  let consumed = 0;
  PART.lastIndex = 0;
  for (let match = PART.exec(text); match; match = PART.exec(text)) {
    total += Number(match[1]) * UNIT_MS[match[2] as DurationUnit];
    consumed = PART.lastIndex;
  }
  if (text.length === 0 || consumed !== text.length) {
    throw new RangeError(`Invalid duration "${duration}": use milliseconds or a string like "500ms", "30s", "5m", "2h", "1d"`);
  }
  return Math.round(total);
}
