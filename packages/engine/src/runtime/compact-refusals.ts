/**
 * Where the compact form of stored steps was refused. The executor trusts an app's last
 * registration to say what its SDK reads, and a rolling deploy or a rollback can leave an
 * instance behind the URL that runs an older SDK: it answers 400 to the compact form, and the
 * invocation is sent again at once with every field (`FullFormFallback`). Without a memory of
 * that, every invocation there goes twice and nobody hears why.
 *
 * So a URL that answered the compact form 400 gets its invocations in full for a while
 * ({@link DEFAULT_FULL_FORM_FOR_MS}), from that moment: the full-form invocation may run for
 * minutes before it answers, and the invocations beside it must not go twice meanwhile. Once
 * the SDK there is seen reading the full form, the refusal is logged, once for the stretch,
 * with what to do about it. A 400 to the full form too is the app's own answer (not its SDK's
 * age), and the URL is forgotten. After the stretch the compact form is tried again: the deploy
 * has most likely finished. (An app registered again by the older SDK declares no compact form,
 * and gets every field whatever is remembered here.)
 */
import { formatDuration, type Logger } from "../log.ts";
import { shownUrl, type DeploymentTarget } from "../deployments.ts";
import type { AppRecord } from "../records.ts";

/** How long a URL that refused the compact form gets its invocations in full, unless told otherwise. */
export const DEFAULT_FULL_FORM_FOR_MS = 5 * 60_000;

interface Refusal {
  /** Until when (on the memory's clock) the URL gets the full form. */
  until: number;
  /** Whether the SDK there was seen reading the full form (and the refusal logged). */
  confirmed: boolean;
}

export class CompactFormRefusals {
  private readonly refusals = new Map<string, Refusal>();

  constructor(
    private readonly log: Logger,
    private readonly fullFormForMs = DEFAULT_FULL_FORM_FOR_MS,
    /** A monotonic clock: a wall clock set back must not make the full form last for good. */
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Whether invocations of `app` at `target` go in full for now, the compact form having been refused there lately. */
  sendsInFull(app: AppRecord, target: DeploymentTarget): boolean {
    // Asked on every invocation: nothing to build while nothing was refused.
    if (this.refusals.size === 0) return false;
    const key = keyOf(app, target);
    const refusal = this.refusals.get(key);
    if (!refusal) return false;
    if (this.now() < refusal.until) return true;
    this.refusals.delete(key);
    return false;
  }

  /** `target` answered an invocation in the compact form 400: the full form goes there from now on. */
  refused(app: AppRecord, target: DeploymentTarget): void {
    const now = this.now();
    for (const [key, refusal] of this.refusals) if (refusal.until <= now) this.refusals.delete(key);
    const key = keyOf(app, target);
    if (!this.refusals.has(key)) this.refusals.set(key, { until: now + this.fullFormForMs, confirmed: false });
  }

  /**
   * How the same invocation in full fared there: `read`, the SDK answered it (the compact form's
   * refusal was its age, `reason` what it said); else it refused that too, for a reason of the app's own.
   */
  fullForm(app: AppRecord, target: DeploymentTarget, read: boolean, reason: string): void {
    const key = keyOf(app, target);
    const refusal = this.refusals.get(key);
    if (!refusal || refusal.confirmed) return;
    if (!read) return void this.refusals.delete(key);
    refusal.confirmed = true;
    this.log.warn(
      `app ${app.id}: ${shownUrl(target.url)} refused stored steps in the compact form (HTTP 400: ${reason || "no reason given"}) and read them in full: ` +
        `an instance there runs an older SDK than the one registered (a rolling deploy or a rollback). ` +
        `Its invocations go in full for ${formatDuration(this.fullFormForMs)}; update the SDK on every instance, or sync the app again from the older one`,
    );
  }
}

function keyOf(app: AppRecord, target: DeploymentTarget): string {
  return `${app.id}\n${target.url}`;
}
