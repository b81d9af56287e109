/**
 * Cron triggers: `"0 9 * * 1-5"` (minute hour day-of-month month day-of-week), with a leading
 * seconds field (`"*\/10 * * * * *"`), in a time zone with a `TZ=` prefix
 * (`"TZ=Europe/Paris 0 9 * * 1-5"`; UTC without one). Parsed by croner, which the SDK (to
 * refuse a bad pattern where it is written) and the executor (to schedule ticks) share.
 */
import { Cron } from "croner";

/** The name of the event a cron tick starts its run with; `data` is {@link CronEventData}. */
export const CRON_EVENT = "stepwise/cron";

/** What a run started by a cron tick receives as `event.data`. */
export interface CronEventData {
  /** The trigger's pattern, as written. */
  cron: string;
  /** The tick this run is for (ISO time); a run started late, after an outage, says which. */
  scheduledAt: string;
}

const TZ_PREFIX = /^(?:CRON_)?TZ=(\S+)\s+(.*)$/;

function schedule(text: string): Cron {
  const prefixed = TZ_PREFIX.exec(text.trim());
  const pattern = prefixed ? prefixed[2]!.trim() : text.trim();
  const timezone = prefixed ? prefixed[1]! : "UTC";
  return new Cron(pattern, { timezone, paused: true });
}

/**
 * What is wrong with a cron trigger's pattern, or undefined when it is fine: one that does not
 * parse, names a time zone that does not exist, or never comes round (`0 0 30 2 *`).
 */
export function cronProblem(text: string): string | undefined {
  try {
    if (schedule(text).nextRun(new Date()) === null) return `"${text}" never comes round`;
    return undefined;
  } catch (error) {
    return `"${text}" is not a cron pattern (${error instanceof Error ? error.message : String(error)}); ` +
      `write "minute hour day month weekday", optionally with seconds first and a "TZ=<zone> " prefix`;
  }
}

/** The first tick of `text` strictly after `after`, or null when there is none. Throws on a bad pattern. */
export function nextCronTick(text: string, after: Date): Date | null {
  return schedule(text).nextRun(after);
}
