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
import type { RefusalCount } from "./store.ts";
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
 * The shortest window (0 aside): its pause, 2 s at least so that a retry comes round, must be
 * at most half of it, so that a window of refusals is three of them at least. With a 2 s pause
 * on a 1 s window, two refusals around a stall of the only executor sending there (nothing
 * between them to answer) were a window.
 */
export const MIN_DEPLOYMENT_GONE_AFTER_MS = 4_000;

/**
 * Connections refused by pinned deployments. The store counts how long a deployment has refused
 * (from every executor); an answer from it clears the count. The executor that got the answer
 * tells it at once when it saw a refusal there itself or its registry shows a count, and
 * otherwise at most once a write interval: its registry is seconds behind, and an answer no one
 * tells lets the count join refusals other executors saw around it. A pause in the refusals
 * longer than a few retries (at most half the window) starts the count again. Each process
 * records a refusal of one deployment at most once a second (or retry interval, if shorter),
 * the others retried quietly: a thousand runs pinned to a restarting deployment cost a write a
 * second, not a thousand. Times are read from a monotonic clock: a wall clock set back must not
 * silence answers.
 */
export class DeploymentRefusals {
  /** Deployments this process saw refuse since they last answered, and when it last recorded it. */
  private readonly recorded = new Map<string, number>();
  /** When this process last told each deployment's answer. */
  private readonly told = new Map<string, number>();
  /** How long refusals must last (0: the first is gone); shorter windows asked for are raised to {@link MIN_DEPLOYMENT_GONE_AFTER_MS}. */
  readonly goneAfterMs: number;
  /** How often a refused job is tried there again. */
  readonly retryInMs: number;
  /** A pause in the refusals this long starts the count again: longer than a retry takes to come round. */
  readonly pauseMs: number;
  /** How often a deployment's refusal, or an answer with no count known, is written. */
  readonly writeEveryMs: number;

  constructor(goneAfterMs = DEFAULT_DEPLOYMENT_GONE_AFTER_MS) {
    this.goneAfterMs = goneAfterMs > 0 ? Math.max(goneAfterMs, MIN_DEPLOYMENT_GONE_AFTER_MS) : 0;
    // Often enough to see a restart end, few enough to cost nothing while it lasts.
    this.retryInMs = Math.min(5_000, Math.max(100, Math.round(this.goneAfterMs / 10)));
    // A retry comes round after its delay and the claim loop's next look (up to a poll interval).
    this.pauseMs = Math.max(4 * this.retryInMs, 2_000);
    this.writeEveryMs = Math.min(1_000, this.retryInMs);
  }

  /**
   * `target` answered `response` (an answer: the app's own errors included, not a connection
   * that failed): a count of its refusals ends.
   */
  async answered(ctx: EngineContext, app: AppRecord, run: RunRecord, target: DeploymentTarget, response: InvokeResponse): Promise<void> {
    if (!target.pinned || !answeredByApp(response)) return;
    const key = keyOf(app, run, target);
    const now = performance.now();
    const sawCount = this.recorded.delete(key) || target.refusing === true;
    // With a window of 0 this process keeps no count, but other executors' may be counting.
    if (!sawCount && this.goneAfterMs === 0) return;
    const toldAt = this.told.get(key);
    if (!sawCount && toldAt !== undefined && now - toldAt < this.writeEveryMs) return;
    // Taken before the write: answers of the same moment write once.
    this.told.set(key, now);
    if (this.told.size > 100) this.forgetOld(now);
    // Resolves to the error, if any: the answer is the run's, and the next answer tells again.
    const failure = ctx.store.deploymentAnswered(app.id, run.appVersion!, target.url).then(
      () => undefined,
      (error: unknown) => {
        if (this.told.get(key) === now) this.told.delete(key);
        return { error };
      },
    );
    // Most likely there is no count to end: the job does not wait, and a failure is quiet.
    if (!sawCount) return;
    const failed = await failure;
    if (failed) ctx.log.warn(`app ${app.id}: could not record that the deployment of version ${run.appVersion} answered again: ${describe(failed.error)}`);
  }

  /**
   * The run's deployment turned out gone: marks it so (once, whichever executor finds it) and
   * reloads the apps, so the invocation can be prepared again for where the run goes now. A
   * refused connection counts toward that; until the refusals have lasted `goneAfterMs`, this
   * throws {@link DeploymentUnreachable}, and the job is tried at the same deployment again.
   */
  async leave(ctx: EngineContext, app: AppRecord, run: RunRecord, target: DeploymentTarget, gone: DeploymentGone): Promise<void> {
    const where = `the deployment of version ${run.appVersion} at ${shownUrl(target.url)}`;
    const key = keyOf(app, run, target);
    const now = performance.now();
    this.forgetOld(now);
    let marked: boolean;
    if (gone.refused && this.goneAfterMs > 0) {
      const last = this.recorded.get(key);
      const recordNow = last === undefined || now - last >= this.writeEveryMs;
      let state: RefusalCount = "counting";
      if (recordNow) {
        // Taken before the write: refusals of the same moment (a batch of jobs) write once.
        this.recorded.set(key, now);
        try {
          state = await ctx.store.deploymentRefused(app.id, run.appVersion!, target.url, this.goneAfterMs, this.pauseMs);
        } catch (error) {
          if (this.recorded.get(key) === now) {
            if (last === undefined) this.recorded.delete(key);
            else this.recorded.set(key, last);
          }
          throw error;
        }
      }
      if (state === "counting") {
        throw new DeploymentUnreachable(
          `run ${run.id}: ${where} ${gone.message}; trying it there again in ${formatDuration(this.retryInMs)} (its runs move to ${shownUrl(app.url)} once it has refused for ${formatDuration(this.goneAfterMs)})`,
          this.retryInMs,
          !recordNow,
        );
      }
      marked = state === "gone";
    } else {
      marked = await ctx.store.markDeploymentGone(app.id, run.appVersion!, target.url);
    }
    this.recorded.delete(key);
    if (marked) ctx.log.warn(`app ${app.id}: ${where} is gone (${gone.message}); its runs move to ${shownUrl(app.url)}`);
    await ctx.registry.refresh();
  }

  /** Refusals older than a pause mean nothing any more (the deployment answered elsewhere, or went). */
  private forgetOld(now: number): void {
    for (const [key, at] of this.recorded) if (now - at > this.pauseMs + 1_000) this.recorded.delete(key);
    for (const [key, at] of this.told) if (now - at >= this.writeEveryMs) this.told.delete(key);
  }
}

/**
 * Whether the deployment itself answered: anything the SDK sent, its errors included, but not
 * what the invoker made of no answer (a connection that failed, a proxy's page, a redirect).
 */
function answeredByApp(response: InvokeResponse): boolean {
  return !(response.type === "error" && NOT_AN_ANSWER.has(response.error.name));
}
const NOT_AN_ANSWER = new Set(["AppUnreachable", "AppError", "AppRedirected"]);

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
