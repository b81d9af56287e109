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
}

/** Where to invoke `run`: its version's own deployment while that is live, else the app's URL. */
export function deploymentOf(app: AppRecord, run: Pick<RunRecord, "appVersion">): DeploymentTarget {
  const current = { id: app.id, url: app.url, features: app.features, pinned: false };
  if (run.appVersion === undefined) return current;
  const deployment = app.deployments?.find((d) => d.version === run.appVersion);
  if (!deployment) return { ...current, unknown: true };
  if (deployment.gone || deployment.url === undefined || deployment.url === app.url) return current;
  return { id: app.id, url: deployment.url, features: deployment.features, pinned: true };
}

/** How long a deployment refuses connections, with no answer between, before it is gone. */
export const DEFAULT_DEPLOYMENT_GONE_AFTER_MS = 60_000;

/**
 * Connections refused by pinned deployments, as this process saw them. The store counts how long
 * a deployment has refused (from every executor); a deployment this process saw refuse and then
 * answer has its count cleared, so refusals now and then between answers (a flaky network, a
 * restart long ago) never add up to "gone". Only processes that saw a refusal clear it: an
 * answer costs a write only after one.
 */
export class DeploymentRefusals {
  private readonly seen = new Set<string>();

  constructor(readonly goneAfterMs = DEFAULT_DEPLOYMENT_GONE_AFTER_MS) {}

  /** `target` answered (whatever it said): a count of its refusals this process added to ends. */
  async answered(ctx: EngineContext, app: AppRecord, run: RunRecord, target: DeploymentTarget): Promise<void> {
    if (!target.pinned || !this.seen.delete(target.url)) return;
    try {
      await ctx.store.deploymentAnswered(app.id, run.appVersion!, target.url);
    } catch (error) {
      // The answer is the run's; the count is cleared at the next answer instead.
      this.seen.add(target.url);
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
    if (gone.refused && !(await ctx.store.deploymentRefused(app.id, run.appVersion!, target.url, this.goneAfterMs))) {
      this.seen.add(target.url);
      // Often enough to see a restart end, few enough to cost nothing while it lasts.
      const retryInMs = Math.min(5_000, Math.max(100, Math.round(this.goneAfterMs / 10)));
      throw new DeploymentUnreachable(
        `run ${run.id}: ${where} ${gone.message}; trying it there again in ${formatDuration(retryInMs)} (its runs move to ${shownUrl(app.url)} once it has refused for ${formatDuration(this.goneAfterMs)})`,
        retryInMs,
      );
    }
    this.seen.delete(target.url);
    if (gone.refused || (await ctx.store.markDeploymentGone(app.id, run.appVersion!, target.url))) {
      ctx.log.warn(`app ${app.id}: ${where} is gone (${gone.message}); its runs move to ${shownUrl(app.url)}`);
    }
    await ctx.registry.refresh();
  }
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
