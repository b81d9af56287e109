/**
 * Versioned deploys: where a run is invoked. A run records the version of its app it started on
 * (`RunRecord.appVersion`) and is invoked at the URL of that version's deployment while it is
 * live, so a deploy never changes the code under a run in flight: the new version's runs go to
 * the new deployment, the old ones finish on theirs. A deployment that answers 404 or 410, or
 * refuses the connection (nothing ran), is marked gone, and its runs move to the app's URL,
 * where replay tells them plainly if the code changed under them (a non-determinism error).
 */
import type { EngineContext } from "./context.ts";
import { DeploymentGone } from "./errors.ts";
import { invokeApp, type InvokerOptions } from "./invoker.ts";
import type { AppRecord, RunRecord } from "./records.ts";

/** Where a run is invoked, and what the SDK there understands. */
export interface DeploymentTarget {
  id: string;
  url: string;
  features: string[];
  /** Not the app's URL: the deployment of an earlier version, which may be gone. */
  pinned: boolean;
}

/** Where to invoke `run`: its version's deployment (`pinned` when that is not the app's URL), else the app's URL. */
export function deploymentOf(app: AppRecord, run: Pick<RunRecord, "appVersion">): DeploymentTarget {
  const deployment = run.appVersion === undefined ? undefined : app.deployments?.find((d) => d.version === run.appVersion);
  if (!deployment || deployment.url === app.url) return { id: app.id, url: app.url, features: app.features, pinned: false };
  return { id: app.id, url: deployment.url, features: deployment.features, pinned: true };
}

/** {@link invokeApp} at `target`; at the app's URL once a pinned target turns out gone. */
export async function invokeDeployment(
  ctx: EngineContext,
  invoker: InvokerOptions,
  app: AppRecord,
  run: RunRecord,
  target: DeploymentTarget,
  ...rest: [functionId: string, request: Parameters<typeof invokeApp>[3], headers?: Record<string, string>]
): ReturnType<typeof invokeApp> {
  if (!target.pinned) return invokeApp(invoker, target, ...rest);
  try {
    return await invokeApp(invoker, target, ...rest);
  } catch (error) {
    if (!(error instanceof DeploymentGone)) throw error;
    if (await ctx.store.markDeploymentGone(app.id, run.appVersion!)) {
      ctx.log.warn(`app ${app.id}: the deployment of version ${run.appVersion} is gone (${error.message}); its runs move to ${app.url}`);
    }
    await ctx.registry.refresh();
    return invokeApp(invoker, { id: app.id, url: app.url }, ...rest);
  }
}
