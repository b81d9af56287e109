/**
 * Versioned deploys: where a run is invoked. A run records the version of its app it started on
 * (`RunRecord.appVersion`) and, where the app named that version's own deployment URL, is
 * invoked there while it is live, so a deploy never changes the code under a run in flight: the
 * new version's runs go to the new deployment, the old ones finish on theirs. A deployment that
 * answers 404 or 410, or refuses the connection (nothing ran), is marked gone, and its runs move
 * to the app's URL, where replay tells them plainly if the code changed under them.
 */
import type { EngineContext } from "./context.ts";
import type { DeploymentGone } from "./errors.ts";
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

/**
 * The run's deployment turned out gone: marks it so (once, whichever executor finds it) and
 * reloads the apps, so the invocation can be prepared again for where the run goes now.
 */
export async function leaveGoneDeployment(ctx: EngineContext, app: AppRecord, run: RunRecord, target: DeploymentTarget, gone: DeploymentGone): Promise<void> {
  if (await ctx.store.markDeploymentGone(app.id, run.appVersion!, target.url)) {
    ctx.log.warn(`app ${app.id}: the deployment of version ${run.appVersion} at ${shownUrl(target.url)} is gone (${gone.message}); its runs move to ${shownUrl(app.url)}`);
  }
  await ctx.registry.refresh();
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
