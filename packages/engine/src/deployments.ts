/**
 * Versioned deploys: where a run is invoked. A run records the version of its app it started on
 * (`RunRecord.appVersion`) and, where the app named that version's own deployment URL, is
 * invoked there while it is live, so a deploy never changes the code under a run in flight: the
 * new version's runs go to the new deployment, the old ones finish on theirs. A deployment that
 * answers 404 or 410 (nothing ran) is marked gone, and its runs move to the app's URL, where
 * replay tells them plainly if the code changed under them. One that refuses connections is
 * gone only once it has refused for {@link DEFAULT_DEPLOYMENT_GONE_AFTER_MS}: a restart or a
 * network blip must not move runs to code they did not start on, for good.
 */
import type { EngineContext } from "./context.ts";
import { describe, DeploymentUnreachable, type DeploymentGone } from "./errors.ts";
import { formatDuration } from "./log.ts";
import type { InvokeResponse } from "@stepwise/protocol";
import type { AppRecord, RunRecord } from "./records.ts";

/** Where a run is invoked, and what the SDK there understands. */
export interface DeploymentTarget {
  id: string;
  url: string;
  features: string[];
  /** A version's own deployment, not the app's URL: it may turn out gone. */
  pinned: boolean;
  /** The run's version is not in this copy of the app (another executor registered it since). */
  unknown?: true;
  /** It refused connections lately, as the registry last read it (see {@link DeploymentRefusals}). */
  refusing?: true;
}

/** Where to invoke `run`: its version's own deployment while that is live, else the app's URL. */
export function deploymentOf(app: AppRecord, run: Pick<RunRecord, "appVersion">): DeploymentTarget {
  const current = { id: app.id, url: app.url, features: app.features, pinned: false };
  if (run.appVersion === undefined) return current;
  const deployment = app.deployments?.find((d) => d.version === run.appVersion);
  if (!deployment) return { ...current, unknown: true };
  if (deployment.gone || deployment.url === undefined || deployment.url === app.url) return current;
  return { id: app.id, url: deployment.url, features: deployment.features, pinned: true, ...(deployment.refusing && { refusing: true as const }) };
}

/** How long a deployment refuses connections, with no answer between, before it is gone. */
export const DEFAULT_DEPLOYMENT_GONE_AFTER_MS = 60_000;

/**
 * Connections refused by pinned deployments. The store counts how long a deployment has refused
 * (from every executor); an answer from it clears the count, told by the executor that got the
 * answer when it saw a refusal there itself or its registry shows a count (so an answer costs a
 * write only after a refusal), and refusals now and then between answers never add up. Each
 * process records a refusal of one deployment at most once a retry interval: a thousand runs
 * pinned to a restarting deployment cost a write a second, not a thousand.
 */
export class DeploymentRefusals {
  /** Deployments this process saw refuse since they last answered, and when it last recorded it. */
  private readonly recorded = new Map<string, number>();
  /** How often a refused job is tried there again. */
  readonly retryInMs: number;
  /** A pause in the refusals this long starts the count again (longer than a retry takes to come round). */
  private readonly pauseMs: number;

  constructor(readonly goneAfterMs = DEFAULT_DEPLOYMENT_GONE_AFTER_MS) {
    // Often enough to see a restart end, few enough to cost nothing while it lasts.
    this.retryInMs = Math.min(5_000, Math.max(100, Math.round(goneAfterMs / 10)));
    this.pauseMs = Math.max(goneAfterMs, 4 * this.retryInMs);
  }

  /**
   * `target` answered `response` (an answer: the app's own errors included, not a connection
   * that failed): a count of its refusals ends.
   */
  async answered(ctx: EngineContext, app: AppRecord, run: RunRecord, target: DeploymentTarget, response: InvokeResponse): Promise<void> {
    if (!target.pinned || (response.type === "error" && response.error.name === "AppUnreachable")) return;
    const key = keyOf(app, run, target);
    if (!this.recorded.delete(key) && !target.refusing) return;
    try {
      await ctx.store.deploymentAnswered(app.id, run.appVersion!, target.url);
    } catch (error) {
      // The answer is the run's; the count is cleared at the next answer instead.
      this.recorded.set(key, 0);
      ctx.log.warn(`app ${app.id}: could not record that the deployment of version ${run.appVersion} answered again: ${describe(error)}`);
    }
  }

  /**
   * The run's deployment turned out gone: marks it so (once, whichever executor finds it) and
   * reloads the apps, so the invocation can be prepared again for where the run goes now. A
   * refused connection counts toward that; until the refusals have lasted `goneAfterMs`, this
   * throws {@link DeploymentUnreachable}, and the job is tried at the same deployment again.
   */
  async leave(ctx: EngineContext, app: AppRecord, run: RunRecord, target: DeploymentTarget, gone: DeploymentGone): Promise<void> {
    const where = `the deployment of version ${run.appVersion} at ${shownUrl(target.url)}`;
    let marked: boolean;
    if (gone.refused && this.goneAfterMs > 0) {
      const key = keyOf(app, run, target);
      const last = this.recorded.get(key);
      const now = Date.now();
      const recordNow = last === undefined || now - last >= Math.min(1_000, this.retryInMs);
      const state = recordNow ? await ctx.store.deploymentRefused(app.id, run.appVersion!, target.url, this.goneAfterMs, this.pauseMs) : "counting";
      if (state === "counting") {
        if (recordNow) this.recorded.set(key, now);
        throw new DeploymentUnreachable(
          `run ${run.id}: ${where} ${gone.message}; trying it there again in ${formatDuration(this.retryInMs)} (its runs move to ${shownUrl(app.url)} once it has refused for ${formatDuration(this.goneAfterMs)})`,
          this.retryInMs,
          !recordNow,
        );
      }
      this.recorded.delete(key);
      marked = state === "gone";
    } else {
      marked = await ctx.store.markDeploymentGone(app.id, run.appVersion!, target.url);
    }
    if (marked) ctx.log.warn(`app ${app.id}: ${where} is gone (${gone.message}); its runs move to ${shownUrl(app.url)}`);
    await ctx.registry.refresh();
  }
}

function keyOf(app: AppRecord, run: RunRecord, target: DeploymentTarget): string {
  return `${app.id}\n${run.appVersion}\n${target.url}`;
}

/** A URL as logs and the API show it: no credentials, no query (a bypass token may be there). */
export function shownUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}${parsed.search ? "?…" : ""}`;
  } catch {
    return "(not a URL)";
  }
}
