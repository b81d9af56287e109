/**
 * The executor as one object: what the HTTP API (Node server or Worker) calls. It ingests
 * events, registers apps, answers run queries, cancels runs, and drives the worker loop.
 */
import { AppDescriptionSchema, globalFunctionId, newId, type AppDescription, type BackoffConfig } from "@stepwise/protocol";
import { transact, type EngineContext } from "./context.ts";
import { InputError, isUnavailable } from "./errors.ts";
import { parseEvents } from "./event-input.ts";
import { finishRun } from "./finish.ts";
import { ingestInTransaction } from "./ingest.ts";
import { DEFAULT_LIMITS, type Limits } from "./limits.ts";
import { consoleLogger, type Logger } from "./log.ts";
import { TERMINAL_RUN_STATUSES, type FunctionRecord, type JobRecord } from "./records.ts";
import { Registry } from "./registry.ts";
import { drain, type DrainOptions, type DrainResult } from "./drain.ts";
import { runJob, type JobRunner } from "./jobs.ts";
import type { Store } from "./store.ts";
import { runView, type RunView } from "./views.ts";
import { Worker } from "./worker.ts";

export interface ExecutorOptions {
  store: Store;
  /** Key the executor signs app requests with (the dev server uses the public dev key). */
  signingKey: string;
  limits?: Partial<Limits>;
  log?: Logger;
  /** Default retry backoff for functions that set none. */
  backoff?: BackoffConfig;
  /** Jobs run at once by this process. */
  concurrency?: number;
  /** How long a claimed job is held before another executor may take it over. */
  leaseMs?: number;
  /** Longest pause between queue polls when idle. */
  pollMs?: number;
  /** Longest one invocation of an app may take. */
  invokeTimeoutMs?: number;
  /** How long the cache of registered functions is trusted before a reload. */
  registryRefreshMs?: number;
  /** How often the queue is checked against the record (lost jobs, stranded runs). */
  maintenanceMs?: number;
  /** Process-unique worker name (for leases). */
  workerId?: string;
  fetch?: typeof fetch;
}

export class Executor {
  readonly limits: Limits;
  readonly log: Logger;
  private readonly ctx: EngineContext;
  private readonly worker: Worker;
  private readonly runner: JobRunner;
  private maintenance: ReturnType<typeof setInterval> | undefined;
  private maintaining: Promise<void> | undefined;

  constructor(private readonly options: ExecutorOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.log = options.log ?? consoleLogger;
    const registry = new Registry(options.store, options.registryRefreshMs);
    this.ctx = {
      store: options.store,
      registry,
      limits: this.limits,
      log: this.log,
      backoff: options.backoff ?? {},
      onEnqueued: (jobs) => this.announce(jobs),
    };
    const owner = options.workerId ?? `executor-${newId()}`;
    const leaseMs = options.leaseMs ?? 30_000;
    const runner: JobRunner = (this.runner = {
      prefetched: new Map(),
      local: new Set<string>(),
      ctx: this.ctx,
      owner,
      leaseMs,
      invoker: {
        signingKey: options.signingKey,
        timeoutMs: options.invokeTimeoutMs ?? 300_000,
        maxResponseBytes: this.limits.maxResponseBytes,
        fetch: options.fetch,
      },
    });
    this.worker = new Worker({
      queue: options.store.queue,
      owner,
      concurrency: options.concurrency ?? 16,
      leaseMs,
      pollMs: options.pollMs ?? 1_000,
      log: this.log,
      handle: (job) => runJob(runner, job),
      isLocal: (job) => runner.local.has(job.id),
      // Continuations are leased in the record: a queue elsewhere cannot extend those leases.
      extendRecordLeases: options.store.queue.authoritative
        ? undefined
        : (ids, owner, leaseMs) => options.store.extendRecordLeases(ids, owner, leaseMs),
    });
  }

  /** Creates the schema, loads the registry and starts working the queue. */
  async start(): Promise<void> {
    await this.options.store.migrate();
    await this.ctx.registry.refresh();
    this.worker.start();
    const every = this.options.maintenanceMs ?? 15_000;
    this.maintenance = setInterval(() => void this.maintain(), every);
    void this.maintain();
  }

  /**
   * Runs due jobs for about `budgetMs` without the long-lived loop (Workers, alarms, cron),
   * then returns, saying when the next job is due. Needs no `start()`; call `migrate()` on the
   * store once first. Safe beside other executors and other drains: jobs are leased as usual.
   */
  drain(options: DrainOptions): Promise<DrainResult> {
    return drain(this.runner, options);
  }

  /** Stops taking work; running jobs finish (up to `graceMs`) or are given back. */
  async stop(graceMs?: number): Promise<void> {
    clearInterval(this.maintenance);
    await this.maintaining;
    await this.worker.stop(graceMs);
  }

  /**
   * Checks the queue against the record: re-adds jobs the queue lost (Redis flushed or failed
   * over) and requeues live runs that have no job at all. Runs one at a time per process.
   */
  maintain(): Promise<void> {
    this.maintaining ??= (async () => {
      try {
        const store = this.options.store;
        const readded = await store.queue.reconcile(store);
        if (readded > 0) this.log.warn(`queue had lost ${readded} job(s); re-added them from the record`);
        const stranded = await store.sweepStrandedRuns();
        if (stranded.length > 0) this.log.warn(`requeued ${stranded.length} stranded run(s): ${stranded.join(", ")}`);
      } catch (error) {
        // An unreachable store is reported once per outage by the worker; say nothing more here.
        if (!isUnavailable(error)) {
          this.log.warn(`queue maintenance failed: ${error instanceof Error ? error.message : String(error)}; will retry`);
        }
      } finally {
        this.maintaining = undefined;
      }
    })();
    return this.maintaining;
  }

  private announce(jobs: JobRecord[]): void {
    for (const job of jobs) this.worker.notify(job.runAt);
  }

  /**
   * Validates and stores events and everything they cause (runs started, waits resolved,
   * runs cancelled) in one transaction. Throws {@link InputError} and stores nothing on bad input.
   */
  async sendEvents(body: unknown): Promise<{ ids: string[] }> {
    const events = parseEvents(body, this.limits);
    await this.ctx.registry.ensureFresh();
    await transact(this.ctx, (unit) => ingestInTransaction(unit, events));
    return { ids: events.map((event) => event.id) };
  }

  /** Registers (or updates) an app and its functions. */
  async syncApp(body: unknown): Promise<{ appId: string; functions: string[] }> {
    const parsed = AppDescriptionSchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new InputError(`Invalid app description at ${issue?.path.join(".") || "(root)"}: ${issue?.message}`);
    }
    const app: AppDescription = parsed.data;
    const functions: FunctionRecord[] = app.functions.map((config) => ({
      id: globalFunctionId(app.appId, config.id),
      appId: app.appId,
      localId: config.id,
      config,
    }));
    await this.options.store.syncApp({ id: app.appId, url: app.url, sdk: app.sdk, syncedAt: new Date() }, functions);
    await this.ctx.registry.refresh();
    return { appId: app.appId, functions: functions.map((fn) => fn.id) };
  }

  async listFunctions(): Promise<Array<{ id: string; appId: string; name: string; triggers: unknown[] }>> {
    const functions = await this.ctx.registry.listFunctions();
    return functions.map((fn) => ({ id: fn.id, appId: fn.appId, name: fn.config.name ?? fn.localId, triggers: fn.config.triggers }));
  }

  async getRun(runId: string): Promise<RunView | null> {
    const run = await this.options.store.getRun(runId);
    if (!run) return null;
    return runView(run, await this.options.store.listSteps(runId));
  }

  async listRunsForEvent(eventId: string): Promise<RunView[]> {
    const runs = await this.options.store.listRunsByEvent(eventId);
    return Promise.all(runs.map(async (run) => runView(run, await this.options.store.listSteps(run.id))));
  }

  /** Cancels a live run; a run that already ended is left as it is. Null when there is no such run. */
  async cancelRun(runId: string, reason = "cancelled through the API"): Promise<RunView | null> {
    const { result: found } = await transact(this.ctx, async (unit) => {
      const run = await unit.tx.lockRun(runId);
      if (!run) return false;
      if (!TERMINAL_RUN_STATUSES.includes(run.status)) await finishRun(unit, run, { status: "cancelled", reason });
      return true;
    });
    return found ? this.getRun(runId) : null;
  }
}
