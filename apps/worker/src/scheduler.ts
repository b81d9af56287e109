/**
 * The `Scheduler` Durable Object: one instance (by name) holds one alarm, set to when the next
 * job is due. Timers (sleeps, retry backoffs, wait timeouts) are jobs with a due time in the
 * queue; nothing in a Worker sleeps until then, so the alarm wakes the executor: it drains what
 * is due and sets itself again for the next one. Alarms run at least once (retried when they
 * throw) and survive deploys; the minutely cron in index.ts covers an alarm that was never set.
 */
import { consoleLogger, type DrainResult } from "@stepwise/engine";
import type { DurableObjectNamespace, DurableObjectState } from "./cloudflare.ts";
import { openExecutor, type Env } from "./env.ts";

/** How soon to try again after a drain failed (store unreachable): soon, but not in a loop. */
const RETRY_AFTER_FAILURE_MS = 5_000;

export class Scheduler {
  constructor(
    private readonly state: DurableObjectState,
    private readonly env: Env,
  ) {}

  /** `POST /wake {"at": <epoch ms>}`: make sure the alarm fires by then. */
  async fetch(request: Request): Promise<Response> {
    const body = (await request.json().catch(() => ({}))) as { at?: unknown };
    if (typeof body.at !== "number" || !Number.isFinite(body.at)) {
      return Response.json({ error: 'Send {"at": <epoch milliseconds>}' }, { status: 400 });
    }
    return Response.json({ alarm: await this.wakeBy(body.at) });
  }

  /** Drains due work, then sets the alarm for the next due job. Never throws: it re-arms instead. */
  async alarm(): Promise<void> {
    let next: number | null;
    try {
      const result = await drainOnce(this.env);
      next = result.nextDueAt?.getTime() ?? null;
    } catch (error) {
      consoleLogger.error(`scheduled drain failed: ${error instanceof Error ? error.message : String(error)}; retrying in ${RETRY_AFTER_FAILURE_MS} ms`);
      next = Date.now() + RETRY_AFTER_FAILURE_MS;
    }
    if (next !== null) await this.wakeBy(next);
  }

  /** Sets the alarm to `at` unless one is already set earlier; returns the alarm's time. */
  private async wakeBy(at: number): Promise<number> {
    const storage = this.state.storage;
    // During alarm() this is null unless set since it began, so a drain always re-arms.
    const current = await storage.getAlarm();
    if (current !== null && current <= at) return current;
    await storage.setAlarm(at);
    return at;
  }
}

/** Opens an executor, drains for the configured budget, and closes it. */
export async function drainOnce(env: Env, options: { maintain?: boolean } = {}): Promise<DrainResult> {
  const open = await openExecutor(env);
  try {
    // Reconcile (Redis lost jobs) and sweep stranded runs: the cron's job, once a minute.
    if (options.maintain) await open.executor.maintain();
    return await open.executor.drain({ budgetMs: open.settings.budgetMs, maxJobs: open.settings.maxJobs, concurrency: open.settings.concurrency });
  } finally {
    await open.close().catch(() => {});
  }
}

/** Asks the scheduler to wake by `at` (epoch ms). */
export async function wakeScheduler(namespace: DurableObjectNamespace, at: number): Promise<void> {
  const stub = namespace.get(namespace.idFromName("scheduler"));
  const response = await stub.fetch("https://scheduler/wake", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ at }),
  });
  if (!response.ok) throw new Error(`scheduler refused the wake-up: HTTP ${response.status} ${await response.text()}`);
}
