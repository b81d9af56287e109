/**
 * `GET /api/runs/:id/stream`: the run's transitions as server-sent events, for a dashboard or a
 * script that follows one run. It reads the record (a change made by any executor shows), first
 * the whole run (`snapshot`), then on each change of the run's version the steps that moved
 * (`step`) and the run itself when its status, pause or end moved (`run`), and `end` when it is
 * over. Each message's ID is the run's version; a client that reconnects gets a fresh snapshot.
 * The stream ends after `maxMs` (an EventSource reconnects by itself) and when the executor stops.
 */
import type { Executor, RunView, StepView } from "@stepwise/engine";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";

export interface RunStreamOptions {
  /** How often the record is looked at (default 200 ms). */
  pollMs?: number;
  /** Longest one stream lasts (default 5 minutes). */
  maxMs?: number;
}

const HEARTBEAT_MS = 15_000;
const TERMINAL = new Set(["completed", "failed", "cancelled", "skipped"]);

export async function runStream(c: Context, executor: Executor, runId: string, options: RunStreamOptions = {}): Promise<Response> {
  const first = await executor.getRun(runId);
  if (!first) return c.json({ error: `No run ${runId}` }, 404);
  const pollMs = options.pollMs ?? 200;
  const until = Date.now() + (options.maxMs ?? 300_000);
  return streamSSE(c, async (stream) => {
    let last: RunView = first;
    let version = await executor.runVersion(runId);
    let quietSince = Date.now();
    await stream.writeSSE({ event: "snapshot", id: String(version), data: JSON.stringify(first) });
    while (!TERMINAL.has(last.status) && !stream.aborted && !executor.stopping && Date.now() < until) {
      await stream.sleep(pollMs);
      const now = await executor.runVersion(runId);
      if (now === null) break;
      if (now === version) {
        if (Date.now() - quietSince > HEARTBEAT_MS) {
          // A comment keeps proxies from closing a quiet stream.
          await stream.write(": still here\n\n");
          quietSince = Date.now();
        }
        continue;
      }
      const next = await executor.getRun(runId);
      if (!next) break;
      version = now;
      quietSince = Date.now();
      for (const step of movedSteps(last, next)) await stream.writeSSE({ event: "step", id: String(version), data: JSON.stringify(step) });
      if (runMoved(last, next)) await stream.writeSSE({ event: "run", id: String(version), data: JSON.stringify(withoutSteps(next)) });
      last = next;
    }
    if (TERMINAL.has(last.status)) await stream.writeSSE({ event: "end", id: String(version), data: JSON.stringify(withoutSteps(last)) });
  });
}

function movedSteps(before: RunView, after: RunView): StepView[] {
  const known = new Map(before.steps.map((step) => [step.id, step]));
  return after.steps.filter((step) => {
    const was = known.get(step.id);
    return !was || was.status !== step.status || was.attempts !== step.attempts || was.endedAt !== step.endedAt;
  });
}

function runMoved(before: RunView, after: RunView): boolean {
  return before.status !== after.status || before.endedAt !== after.endedAt || JSON.stringify(before.paused) !== JSON.stringify(after.paused);
}

function withoutSteps(run: RunView): Omit<RunView, "steps"> {
  const { steps: _steps, ...rest } = run;
  return rest;
}
