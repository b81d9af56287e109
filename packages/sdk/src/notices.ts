/**
 * Warnings about the app's calls to the executor failing, at most one of a kind per interval.
 * With a wrong STEPWISE_BASE_URL or the executor down, every checkpointed step of every
 * invocation would log one while the steps go on regardless (their results travel in the
 * invocations' answers instead); one line per kind per interval says the same, with a count.
 */
import type { Logger } from "./types.ts";

/** How often a failure of one kind is logged again. */
export const NOTICE_INTERVAL_MS = 30_000;

export class FailureNotices {
  private readonly kinds = new Map<string, { loggedAt: number; since: number }>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Logs `line` unless a failure of `kind` was logged within the interval; then counts it. */
  warn(kind: string, line: string): void {
    const at = this.now();
    const last = this.kinds.get(kind);
    if (last && at - last.loggedAt < NOTICE_INTERVAL_MS) {
      last.since++;
      return;
    }
    const more = last?.since ? ` (${last.since} more like it since the last notice)` : "";
    this.kinds.set(kind, { loggedAt: at, since: 0 });
    this.log.warn(`${line}${more}`);
  }
}
