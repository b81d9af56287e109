/** The shapes the executor's API answers with, built from records. */
import type { FunctionConfig, SerializedError, TokenUsage } from "@stepwise/protocol";
import type { AppRecord, FunctionRecord, RunRecord, StepRecord } from "./records.ts";
import { shownUrl } from "./deployments.ts";
import { runSummary } from "./run-list.ts";

export interface FunctionView {
  id: string;
  appId: string;
  name: string;
  triggers: FunctionConfig["triggers"];
  /** Its configuration as its app registered it (flow control, retries, timeouts…). */
  config: FunctionConfig;
  paused: boolean;
  pausedAt?: string;
  /** The version its app serves now (absent: an SDK that names none). */
  appVersion?: string;
  /**
   * Its app's versions not known to be gone, oldest first: runs that started on one are invoked
   * at its deployment's own `url` (shown without credentials or query), or without one at the
   * app's. The current version is among them.
   */
  deployments?: Array<{ version: string; url?: string; syncedAt: string }>;
}

export function functionView(fn: FunctionRecord, app?: AppRecord): FunctionView {
  return {
    id: fn.id,
    appId: fn.appId,
    name: fn.config.name ?? fn.localId,
    triggers: fn.config.triggers,
    config: fn.config,
    paused: fn.pausedAt !== undefined,
    ...(fn.pausedAt && { pausedAt: fn.pausedAt.toISOString() }),
    ...(app?.version !== undefined && { appVersion: app.version }),
    ...(app?.deployments && {
      deployments: app.deployments.filter((d) => !d.gone).map((d) => ({ version: d.version, ...(d.url !== undefined && { url: shownUrl(d.url) }), syncedAt: d.syncedAt.toISOString() })),
    }),
  };
}

export interface StepView {
  id: string;
  name: string;
  kind: string;
  status: string;
  output?: unknown;
  error?: SerializedError;
  attempts: number;
  /** Tokens the step's model call spent, where it reported them. */
  usage?: TokenUsage;
  startedAt: string;
  endedAt?: string;
}

export interface RunView {
  id: string;
  functionId: string;
  eventId: string;
  status: RunRecord["status"];
  output?: unknown;
  error?: SerializedError;
  startedAt: string;
  endedAt?: string;
  parentRunId?: string;
  /** Started by an operator from this run's event (`POST /api/runs/:id/replay` or `/rerun`). */
  replayOf?: string;
  /** A rerun: the step it ran again from (the steps before it are the replayed run's). */
  rerunFrom?: string;
  /** Paused: nothing invokes it until it is resumed; `by` "function" when its function's pause held it. */
  paused?: { at: string; by: "operator" | "function" };
  /** The version of its app it started on: it is invoked at that deployment while it is live. */
  appVersion?: string;
  /** A batched run's events (`batchEvents`), in order of arrival: `eventId` is the first. */
  eventIds?: string[];
  /** Tokens its steps' model calls spent, summed (absent when none reported any). */
  usage?: { inputTokens: number; outputTokens: number };
  steps: StepView[];
}

export function runView(run: RunRecord, steps: StepRecord[], batchEventIds: string[] = []): RunView {
  // The list's summary, with what only a run's own page shows: its events, output and steps.
  return {
    ...runSummary(run),
    ...(batchEventIds.length > 0 && { eventIds: batchEventIds }),
    ...(run.status === "completed" && { output: run.output ?? null }),
    ...usageOf(steps),
    steps: [...steps].sort((a, b) => a.position - b.position).map(stepView),
  };
}

/** The tokens of a run's steps, summed: `{ usage }`, or nothing when no step reported any. */
function usageOf(steps: readonly StepRecord[]): { usage?: { inputTokens: number; outputTokens: number } } {
  const used = steps.filter((step) => step.usage);
  if (used.length === 0) return {};
  return { usage: { inputTokens: used.reduce((n, step) => n + step.usage!.inputTokens, 0), outputTokens: used.reduce((n, step) => n + step.usage!.outputTokens, 0) } };
}

function stepView(step: StepRecord): StepView {
  return {
    id: step.id,
    name: step.name,
    kind: step.kind,
    status: step.status,
    ...(step.status === "completed" && { output: step.output ?? null }),
    ...(step.error && { error: step.error }),
    attempts: step.attempts,
    ...(step.usage && { usage: step.usage }),
    startedAt: step.startedAt.toISOString(),
    ...(step.endedAt && { endedAt: step.endedAt.toISOString() }),
  };
}
