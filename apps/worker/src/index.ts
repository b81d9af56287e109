/**
 * The Stepwise executor as a Cloudflare Worker (configured by the top-level wrangler.toml).
 *
 * - `fetch` serves the executor's HTTP API (@stepwise/api). After a change that may have queued
 *   work (an event, an app sync, a cancel), it drains right away in `ctx.waitUntil`, so a run
 *   starts without waiting for any timer, and hands the next due time to the scheduler.
 * - `Scheduler` (a Durable Object) sleeps on one alarm until the next job is due, then drains.
 * - `scheduled` (a cron trigger, every minute) is the safety net: it reconciles the queue with
 *   the record, drains anything overdue, and re-arms the scheduler.
 */
import { createApi } from "@stepwise/api";
import { consoleLogger } from "@stepwise/engine";
import type { ExecutionContext, ScheduledController } from "./cloudflare.ts";
import { openExecutor, type Env } from "./env.ts";
import { drainOnce, wakeScheduler } from "./scheduler.ts";

export { Scheduler } from "./scheduler.ts";

/** What the runtime calls: HTTP requests and cron triggers. */
const worker = {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    let open;
    try {
      open = await openExecutor(env);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      consoleLogger.error(`executor unavailable: ${message}`);
      return Response.json({ error: `Executor unavailable: ${message}` }, { status: 503 });
    }
    const { executor, settings } = open;
    const api = createApi({
      executor,
      dev: settings.dev,
      signingKeys: settings.signingKeys,
      appSigningKeys: settings.appSigningKeys,
      eventKey: settings.eventKey,
      apiKey: settings.apiKey,
      dashboard: settings.dev ? { open: true } : { open: false, key: settings.dashboardKey },
      allowPrivateAppUrls: settings.allowPrivateAppUrls,
    });
    let response: Response;
    try {
      response = await api.fetch(request);
    } catch (error) {
      await open.close().catch(() => {});
      throw error;
    }
    const queuedWork = request.method === "POST" && response.ok;
    ctx.waitUntil(
      (async () => {
        try {
          if (!queuedWork) return;
          const result = await executor.drain({ budgetMs: settings.budgetMs, maxJobs: settings.maxJobs, concurrency: settings.concurrency });
          if (result.nextDueAt) await wakeScheduler(env.SCHEDULER, result.nextDueAt.getTime());
        } catch (error) {
          // The work is in the record; the scheduler's alarm or the cron picks it up.
          consoleLogger.warn(`drain after ${request.method} ${new URL(request.url).pathname} failed: ${error instanceof Error ? error.message : String(error)}`);
        } finally {
          await open.close().catch(() => {});
        }
      })(),
    );
    return response;
  },

  async scheduled(_controller: ScheduledController, env: Env, ctx: ExecutionContext): Promise<void> {
    ctx.waitUntil(
      (async () => {
        const result = await drainOnce(env, { maintain: true });
        if (result.nextDueAt) await wakeScheduler(env.SCHEDULER, result.nextDueAt.getTime());
      })().catch((error: unknown) => {
        consoleLogger.error(`cron drain failed: ${error instanceof Error ? error.message : String(error)}`);
      }),
    );
  },
};

export default worker;
