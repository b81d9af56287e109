/**
 * The Node executor's Prometheus metrics (`GET /metrics`, through prom-client): counted from the
 * executor's signals (emitted after each commit, so a rolled-back change is never counted) and,
 * at each scrape, the queue as the record holds it. Function IDs label the series: a function
 * is a handful of series, whatever its traffic.
 */
import type { Observer, Store } from "@stepwise/engine";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Seconds, from a few milliseconds (a step checkpointed back to back) to an hour (a long model call, a sleep). */
const STEP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600];
/** The platform's share between two steps: milliseconds when all is well. */
const GAP_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface ExecutorMetrics {
  /** Feeds the executor's signals in (`ExecutorOptions.observe`). */
  observe: Observer;
  /** The exposition text and its content type. */
  scrape(): Promise<{ body: string; contentType: string }>;
}

export function createMetrics(store: Store): ExecutorMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "stepwise_" });
  const started = new Counter({ name: "stepwise_runs_started_total", help: "Runs created (by an event, a cron tick, an invoke or a replay), by function", labelNames: ["function"], registers: [registry] });
  const ended = new Counter({ name: "stepwise_runs_ended_total", help: "Runs that ended, by function and how: completed, failed, cancelled or skipped", labelNames: ["function", "status"], registers: [registry] });
  const runDuration = new Histogram({ name: "stepwise_run_duration_seconds", help: "From a run's creation to its end, by function and how it ended", labelNames: ["function", "status"], buckets: STEP_BUCKETS, registers: [registry] });
  const stepDuration = new Histogram({ name: "stepwise_step_duration_seconds", help: "From a step's start to its end (sleeps and waits included), by function, kind and outcome", labelNames: ["function", "kind", "status"], buckets: STEP_BUCKETS, registers: [registry] });
  const stepGap = new Histogram({ name: "stepwise_step_gap_seconds", help: "Inter-step latency: from the end of a run's step to the start of the next one, by function", labelNames: ["function"], buckets: GAP_BUCKETS, registers: [registry] });
  const leasesLost = new Counter({ name: "stepwise_leases_lost_total", help: "Jobs whose commit found their lease gone (it ran out, another executor took the job over, or the run ended meanwhile), by job kind", labelNames: ["kind"], registers: [registry] });
  const storeErrors = new Counter({ name: "stepwise_store_errors_total", help: "Store calls of the work loop that failed, by what it was doing", labelNames: ["doing"], registers: [registry] });
  const due = new Gauge({ name: "stepwise_queue_due_jobs", help: "Jobs due and not held by any executor", registers: [registry] });
  const oldest = new Gauge({ name: "stepwise_queue_oldest_due_seconds", help: "How long the oldest due job not held has been due (0 when none is)", registers: [registry] });
  const leased = new Gauge({ name: "stepwise_queue_leased_jobs", help: "Jobs held by an executor now", registers: [registry] });

  const observe: Observer = (signal) => {
    switch (signal.type) {
      case "run-started":
        started.inc({ function: signal.functionId });
        return;
      case "run-ended":
        ended.inc({ function: signal.functionId, status: signal.status });
        runDuration.observe({ function: signal.functionId, status: signal.status }, seconds(signal.endedAt.getTime() - signal.startedAt.getTime()));
        return;
      case "step-ended":
        stepDuration.observe({ function: signal.functionId, kind: signal.kind, status: signal.status }, seconds(signal.endedAt.getTime() - signal.startedAt.getTime()));
        if (signal.gapMs !== undefined) stepGap.observe({ function: signal.functionId }, seconds(signal.gapMs));
        return;
      case "lease-lost":
        leasesLost.inc({ kind: signal.kind });
        return;
      case "store-error":
        storeErrors.inc({ doing: signal.doing });
        return;
    }
  };

  return {
    observe,
    async scrape() {
      // Read at each scrape; an unreachable store leaves the last values, and says so.
      try {
        // A store that hangs must not take the whole scrape with it: the last values stay, and the error is counted.
        const stats = await Promise.race([
          store.queueStats(),
          new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the store did not answer within 1 s")), 1_000).unref?.()),
        ]);
        due.set(stats.due);
        oldest.set(stats.oldestDueAt ? Math.max(0, seconds(Date.now() - stats.oldestDueAt.getTime())) : 0);
        leased.set(stats.leased);
      } catch {
        storeErrors.inc({ doing: "reading the queue for metrics" });
      }
      return { body: await registry.metrics(), contentType: registry.contentType };
    },
  };
}

const seconds = (ms: number) => Math.max(0, ms) / 1_000;
