/**
 * What every part of the executor shares: the store, the registry, limits, the logger and the
 * clock, and how a committed change takes effect. Work is done in two steps: a transition
 * builds a change, the store commits it; only then are its log lines printed, its jobs made
 * known to a queue outside the record and announced to local workers, so a change that rolled
 * back never wakes anyone or prints a transition that did not happen.
 */
import type { CallbackUrls } from "./callback-urls.ts";
import type { BackoffConfig } from "@stepwise/protocol";
import { resolveBackoff } from "./backoff.ts";
import { describe } from "./errors.ts";
import type { Clock } from "./clock.ts";
import type { Limits } from "./limits.ts";
import type { Logger } from "./log.ts";
import type { MachineEnv, LogLine } from "./machine/draft.ts";
import type { JobRecord } from "./records.ts";
import type { Registry } from "./registry.ts";
import type { Observer, Signal } from "./signals.ts";
import type { Store } from "./store.ts";

export interface EngineContext {
  store: Store;
  registry: Registry;
  limits: Limits;
  log: Logger;
  clock: Clock;
  /** Backoff used where a function sets none. */
  backoff: BackoffConfig;
  /** Apps with signing keys of their own: nothing of theirs is reached from another app. */
  isolatedApps: ReadonlySet<string>;
  /** Called after commit with the jobs a change queued (wakes local workers). */
  onQueued(jobs: JobRecord[]): void;
  /** Told what committed changes did (metrics, traces). */
  observe: Observer;
  /** Mints and reads callback URLs (`step.createCallback`). */
  callbacks: CallbackUrls;
}

/** What transitions of a run of `functionId` may know, from the registry's cache. */
export function machineEnv(ctx: EngineContext, functionId: string): MachineEnv {
  const fn = ctx.registry.cachedFunction(functionId);
  return {
    now: ctx.clock.now(),
    fn,
    limits: ctx.limits,
    backoff: resolveBackoff(ctx.backoff, fn?.config.backoff),
    findFunction: (id) => ctx.registry.cachedFunction(id),
    isolatedApps: ctx.isolatedApps,
  };
}

/** What a commit produced, to take effect once it is durable. */
export interface Committed {
  lines: LogLine[];
  /** What the change did, for metrics and traces (absent: nothing to count). */
  signals?: Signal[];
  queued: JobRecord[];
  deleted: string[];
}

/** After a commit: print its lines, tell the queue, wake local workers. A failure to tell the queue only delays the jobs. */
export async function afterCommit(ctx: EngineContext, committed: Committed): Promise<void> {
  for (const { level, line } of committed.lines) ctx.log[level](line);
  for (const signal of committed.signals ?? []) {
    // What watches the executor must not stop it: the queue still hears of the commit.
    try {
      ctx.observe(signal);
    } catch (error) {
      ctx.log.warn(`an observer of the executor failed: ${describe(error)}`);
    }
  }
  if (committed.queued.length > 0 || committed.deleted.length > 0) {
    try {
      await ctx.store.queue.afterCommit({ queued: committed.queued, deleted: committed.deleted });
    } catch (error) {
      ctx.log.warn(
        `could not update the queue after a commit (${describe(error)}); ${committed.queued.length} job(s) will be re-added by reconcile`,
      );
    }
  }
  if (committed.queued.length > 0) ctx.onQueued(committed.queued);
}

export { describe };
