/**
 * Where the compact form of stored steps was refused. The executor trusts an app's last
 * registration to say what its SDK reads, and a rolling deploy or a rollback can leave an
 * instance behind the URL that runs an older SDK: it answers 400 to the compact form, and the
 * invocation is sent again at once with every field (`invokeApp`). Without a memory of that,
 * every invocation there goes twice and nobody hears why. So a URL whose instance refused the
 * compact form and read the full one gets its invocations in full for {@link FULL_FORM_FOR_MS},
 * and the refusal is logged once for that stretch, with what to do about it. After it, the
 * compact form is tried again: the deploy has most likely finished. (An app registered again by
 * the older SDK declares no compact form, and gets every field whatever is remembered here.)
 */
import type { Logger } from "../log.ts";
import { shownUrl, type DeploymentTarget } from "../deployments.ts";
import type { AppRecord } from "../records.ts";

/** How long a URL that refused the compact form gets its invocations in full. */
export const FULL_FORM_FOR_MS = 5 * 60_000;

export class CompactFormRefusals {
  /** Until when (on `now`'s clock) each app's URL gets the full form. */
  private readonly fullUntil = new Map<string, number>();

  constructor(
    private readonly log: Logger,
    /** A monotonic clock: a wall clock set back must not make the full form last for good. */
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Whether invocations of `app` at `target` go in full for now, having been refused there lately. */
  sendsInFull(app: AppRecord, target: DeploymentTarget): boolean {
    // Asked on every invocation: nothing to build while nothing was refused.
    if (this.fullUntil.size === 0) return false;
    const key = keyOf(app, target);
    const until = this.fullUntil.get(key);
    if (until === undefined) return false;
    if (this.now() < until) return true;
    this.fullUntil.delete(key);
    return false;
  }

  /** The instance at `target` answered the compact form 400 (`reason`) and read the same invocation in full. */
  refused(app: AppRecord, target: DeploymentTarget, reason: string): void {
    const now = this.now();
    for (const [key, until] of this.fullUntil) if (until <= now) this.fullUntil.delete(key);
    const key = keyOf(app, target);
    // Invocations in flight together are all refused: one line for them.
    if (this.fullUntil.has(key)) return;
    this.fullUntil.set(key, now + FULL_FORM_FOR_MS);
    this.log.warn(
      `app ${app.id}: ${shownUrl(target.url)} refused stored steps in the compact form (HTTP 400: ${reason || "no reason given"}) and read them in full: ` +
        `an instance there runs an older SDK than the one registered (a rolling deploy or a rollback). ` +
        `Its invocations go in full for ${FULL_FORM_FOR_MS / 60_000} min; update the SDK on every instance, or sync the app again from the older one`,
    );
  }
}

function keyOf(app: AppRecord, target: DeploymentTarget): string {
  return `${app.id}\n${target.url}`;
}
