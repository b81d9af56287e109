/**
 * What happened to runs, as data, for whatever watches the executor from outside (the Node
 * executor's Prometheus metrics, traces): emitted once the commit that made it so is durable,
 * like log lines, so a change that rolled back is never counted.
 */
import type { RunStatus, StepStatus } from "./records.ts";

export type Signal =
  /** A run was created (an event, a cron tick, an invoke, a replay). */
  | { type: "run-started"; functionId: string; runId: string }
  /** A run ended: completed, failed, cancelled or skipped. */
  | { type: "run-ended"; functionId: string; runId: string; status: RunStatus; startedAt: Date; endedAt: Date; traceparent?: string }
  /**
   * A step reached its end (completed, or failed for good). `gapMs`: how long after the run's
   * step before it ended this one started, where that is known: the platform's share of the wait.
   */
  | { type: "step-ended"; functionId: string; runId: string; stepId: string; kind: string; status: Extract<StepStatus, "completed" | "failed">; attempts: number; startedAt: Date; endedAt: Date; gapMs?: number }
  /** A job's commit found its lease gone (it ran too long, or another executor took it over). */
  | { type: "lease-lost"; kind: string }
  /** A store call failed (unreachable, or it refused). */
  | { type: "store-error"; doing: string };

/** Receives signals; each call must be cheap and must not throw. */
export type Observer = (signal: Signal) => void;

export const ignoreSignals: Observer = () => {};
