/**
 * 20. A run's end stops its `step.fetch` requests: a request the target still held when the
 *     run's end was acknowledged is dropped within {@link DROP_BOUND_MS} of it (every executor
 *     looks for ends once a second), unless an executor crashed, stalled or stopped meanwhile;
 *     and a request is answered or dropped, never left open, once its run is over.
 */
import type { Scene } from "./scene.ts";

/** A look a second, its statement on a store the faults slow, and the event loop of a busy process. */
const DROP_BOUND_MS = 2_500;

export function checkFetches(scene: Scene): { calls: number; dropped: number } {
  const { ledger, runs, fail } = scene;
  let calls = 0;
  let dropped = 0;
  for (const call of ledger.fetchCalls) {
    if (!runs.has(call.runId)) continue;
    calls++;
    if (call.dropped) dropped++;
    const end = ledger.endsAcked.get(call.runId);
    if (end === undefined) continue;
    const over = call.endedAt ?? Date.now();
    if (over - end > DROP_BOUND_MS && !ledger.disturbed(Math.min(call.at, end), over)) {
      fail(`run ${call.runId} ended, yet its request for step "${call.stepId}" (made by ${call.executor}) went on ${over - end} ms after (at most ${DROP_BOUND_MS})`);
    }
  }
  return { calls, dropped };
}
