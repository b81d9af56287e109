/**
 * What configures an executor, and what a bounded drain (Workers, alarms, cron) is given and
 * reports: the options every host (the Node server, the Worker, the tests) passes to `Executor`.
 */
import type { BackoffConfig } from "@stepwise/protocol";
import type { Clock } from "./clock.ts";
import type { Limits } from "./limits.ts";
import type { Logger } from "./log.ts";
import type { DrainBudget } from "./runtime/lanes.ts";
import type { Observer } from "./signals.ts";
import type { Store } from "./store.ts";

/** Finished runs, their steps and events are kept this long by default (7 days). */
export const DEFAULT_RETENTION_MS = 7 * 24 * 3_600_000;

/**
 * Jobs one long-lived executor runs at once. A lane only waits on the app and the store (the
 * function's code runs in the app), so a lane costs a socket and a promise, while a lane held
 * by a slow step (a model call, a checkpointed chain running for seconds) is a lane no other
 * run can use: with 16, sixteen agents waiting on their model stalled every other run. 100 is
 * also what comparable executors start with.
 */
export const DEFAULT_CONCURRENCY = 100;

export interface ExecutorOptions {
  store: Store;
  /** Key the executor signs app requests with (the dev server uses the public dev key). */
  signingKey: string;
  /**
   * The next shared key during a rotation (`STEPWISE_SIGNING_KEY_NEXT`): tokens signed with it
   * (stream tokens an app minted, callback URLs) are accepted too, as the API accepts requests.
   */
  signingKeyNext?: string;
  /**
   * Keys of single apps, by app ID: such an app's invocations are signed with its own key, and
   * only that key registers it (`STEPWISE_APP_SIGNING_KEYS`). Apps not listed share `signingKey`.
   */
  appSigningKeys?: Readonly<Record<string, string>>;
  limits?: Partial<Limits>;
  log?: Logger;
  /** Default retry backoff for functions that set none. */
  backoff?: BackoffConfig;
  /** Jobs run at once by this process (default {@link DEFAULT_CONCURRENCY}). */
  concurrency?: number;
  /** How long a claimed job is held before another executor may take it over. */
  leaseMs?: number;
  /** Longest pause between queue polls when idle. */
  pollMs?: number;
  /** Longest one invocation of an app may take. */
  invokeTimeoutMs?: number;
  /**
   * How long the deployment a run is pinned to may refuse connections, with no answer and no
   * pause of a few retries between, before it counts as gone and its runs move to the app's URL
   * (default one minute; a window under 4 s is taken as 4 s; 0 takes the first refusal for
   * gone). Until then its jobs are tried there again: a restart or a blip moves nothing.
   */
  deploymentGoneAfterMs?: number;
  /**
   * How long an app URL that refused stored steps in the compact form (an instance on an older
   * SDK than the one registered) gets every field instead (default five minutes).
   */
  fullFormForMs?: number;
  /** How long the cache of registered functions is trusted before a reload. */
  registryRefreshMs?: number;
  /** How often the queue is checked against the record (lost jobs, stranded runs, pruning). */
  maintenanceMs?: number;
  /** How long finished runs and old events are kept; 0 keeps them for ever. */
  retentionMs?: number;
  /** Process-unique worker name (for leases). */
  workerId?: string;
  /** Stamps records and log lines (due times are judged on the store's clock). */
  clock?: Clock;
  fetch?: typeof fetch;
  /** Told what committed changes did and what went wrong (metrics, traces); must be cheap and never throw. */
  observe?: Observer;
  /** How long a signal no run waits for keeps trying before the sender hears 404 (default 5 s). */
  signalGraceMs?: number;
  /**
   * Where people and services reach this executor (`STEPWISE_PUBLIC_URL`): the base of the
   * callback URLs it mints. Without it, `step.createCallback` fails with a message that says so.
   */
  publicUrl?: string | (() => string | undefined);
}

export interface DrainOptions extends DrainBudget {
  /** Jobs run at once (default 8): parallel branches and unrelated runs progress together. */
  concurrency?: number;
}

export interface DrainResult {
  /** Jobs that ran to their end (applied, or dropped as already done); a job that invoked its app again, as a continuation would, counts once per invocation. */
  ran: number;
  /** Jobs that failed in the executor and were given back for a retry. */
  failed: number;
  /** Whether it stopped for the budget or `maxJobs` rather than for lack of due work. */
  stoppedEarly: boolean;
  /** When the earliest job not leased is due (now or in the past: due already), or null when none is queued. */
  nextDueAt: Date | null;
}
