/**
 * Concurrency and throttle hold across every executor, unless a crash or stall excuses a breach.
 */
import { SIM_THROTTLE } from "../app.ts";
import { LEASE_MS } from "../schedule.ts";
import { localId, type Scene } from "./scene.ts";

export async function checkLimits(scene: Scene): Promise<void> {
  const { played, ledger, runs, fail } = scene;
  // 14. Concurrency: the executors' calls of each key's runs, from send to end, never more at once than its limit.
  const spans = new Map<string, { limit: number; calls: Array<{ from: number; to: number; id: number }> }>();
  for (const invocation of ledger.invocations) {
    const slots = runs.get(invocation.runId)?.concurrency as Array<{ key: string; limit: number }> | null | undefined;
    for (const { key, limit } of slots ?? []) {
      const entry = spans.get(key) ?? { limit, calls: [] };
      entry.calls.push({ from: invocation.sentAt, to: invocation.endedAt ?? invocation.sentAt, id: invocation.id });
      spans.set(key, entry);
    }
  }
  for (const [key, { limit, calls }] of spans) {
    const over = mostAtOnce(calls);
    if (over.length > limit && !ledger.disturbed(Math.min(...over.map((c) => c.from)), Math.max(...over.map((c) => c.to)))) {
      const told = over.map((c) => {
        const inv = ledger.invocationById(c.id)!;
        return `inv${c.id} ${inv.executor} run ${inv.runId} ${inv.targetStep ?? "-"} ${inv.fault}/${inv.delivery} +${c.from - played.startedAt}..+${c.to - played.startedAt}ms`;
      });
      fail(`concurrency key ${key}: ${over.length} invocations out at once, over its limit of ${limit} (${told.join("; ")})`);
    }
  }

  // 15. Throttle: when each run of sim-responder was first sent to the app.
  const firstSent = new Map<string, number>();
  for (const invocation of ledger.invocations) {
    const run = runs.get(invocation.runId);
    if (!run || localId(run) !== "sim-responder" || firstSent.has(invocation.runId)) continue;
    firstSent.set(invocation.runId, invocation.sentAt);
  }
  const startTimes = [...firstSent.values()].sort((a, b) => a - b);
  const allowed = SIM_THROTTLE.limit + SIM_THROTTLE.burst + 1;
  for (const [i, at] of startTimes.entries()) {
    const within = startTimes.slice(i).filter((t) => t < at + SIM_THROTTLE.period);
    if (within.length > allowed && !ledger.disturbed(at - LEASE_MS, at + SIM_THROTTLE.period)) {
      fail(`sim-responder started ${within.length} runs within ${SIM_THROTTLE.period} ms from +${at - played.startedAt}ms, over its throttle (${SIM_THROTTLE.limit} per period, bursts of ${SIM_THROTTLE.burst})`);
      break;
    }
  }

/** The largest set of calls out at the same moment (a call ending as another starts does not overlap it). */
function mostAtOnce<T extends { from: number; to: number }>(calls: readonly T[]): T[] {
  let most: T[] = [];
  for (const call of calls) {
    const together = calls.filter((other) => other.from <= call.from && other.to > call.from);
    if (together.length > most.length) most = together;
  }
  return most;
}
}
