/**
 * `GET /api/runs/:id/stream`: one run as server-sent events, for a dashboard, a page following
 * its own run, or a script. It reads the record (a change made by any executor shows):
 *
 *   snapshot  the whole run, first
 *   step      a step that moved, on each change of the run's version
 *   run       the run itself, when its status, pause or end moved
 *   message   what the run published (`publish(topic, data)`), in order
 *   end       the run is over (after its last messages)
 *
 * Each message's SSE ID is its number, and the other events carry the number of the last message
 * sent, so a client that reconnects with `Last-Event-ID` (an EventSource does) gets a fresh
 * snapshot and the messages it missed, none twice. `?topic=` (repeatable) keeps only those
 * topics. A publish taken by this executor is sent at once; one taken by another shows at the
 * next look at the record. The stream ends after `maxMs` (an EventSource reconnects by itself)
 * and when the executor stops.
 */
import type { Executor, RunView, StepView } from "@stepwise/engine";
import type { RunMessage } from "@stepwise/protocol";
import type { Context } from "hono";
import { streamSSE, type SSEStreamingApi } from "hono/streaming";

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
  const after = resumePoint(c.req.header("last-event-id") ?? c.req.query("after"));
  if (after === null) return c.json({ error: "Last-Event-ID (or ?after=) must be the number of a message the stream sent, e.g. 12" }, 400);
  const topics = new Set(c.req.queries("topic") ?? []);
  const pollMs = options.pollMs ?? 200;
  const until = Date.now() + (options.maxMs ?? 300_000);
  return streamSSE(c, async (stream) => {
    let last: RunView = first;
    let cursor = after;
    let version = await executor.runVersion(runId);
    let quietSince = Date.now();
    // A publish this process takes wakes the loop at once instead of at the next look.
    let ring: (() => void) | undefined;
    const stopListening = executor.listenForMessages(runId, () => ring?.());
    stream.onAbort(() => ring?.());
    const sendMessages = async (): Promise<number> => {
      let sent = 0;
      for (let batch = await executor.runMessages(runId, cursor); batch.length > 0; batch = await executor.runMessages(runId, cursor)) {
        for (const message of batch) {
          cursor = message.seq;
          if (topics.size > 0 && !topics.has(message.topic)) continue;
          await writeMessage(stream, message);
          sent++;
        }
      }
      return sent;
    };
    try {
      await stream.writeSSE({ event: "snapshot", id: String(cursor), data: JSON.stringify(first) });
      await sendMessages();
      while (!TERMINAL.has(last.status) && !stream.aborted && !executor.stopping && Date.now() < until) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, pollMs);
          ring = done;
          function done() {
            clearTimeout(timer);
            ring = undefined;
            resolve();
          }
        });
        if (stream.aborted) break;
        const moved = (await sendMessages()) > 0;
        const now = await executor.runVersion(runId);
        if (now === null) break;
        if (now === version) {
          if (!moved && Date.now() - quietSince > HEARTBEAT_MS) {
            // A comment keeps proxies from closing a quiet stream.
            await stream.write(": still here\n\n");
            quietSince = Date.now();
          } else if (moved) quietSince = Date.now();
          continue;
        }
        const next = await executor.getRun(runId);
        if (!next) break;
        version = now;
        quietSince = Date.now();
        for (const step of movedSteps(last, next)) await stream.writeSSE({ event: "step", id: String(cursor), data: JSON.stringify(step) });
        if (runMoved(last, next)) await stream.writeSSE({ event: "run", id: String(cursor), data: JSON.stringify(withoutSteps(next)) });
        last = next;
      }
      if (TERMINAL.has(last.status) && !stream.aborted) {
        // What the run published before it ended comes before its end.
        await sendMessages();
        await stream.writeSSE({ event: "end", id: String(cursor), data: JSON.stringify(withoutSteps(last)) });
      }
    } finally {
      stopListening();
    }
  });
}

function writeMessage(stream: SSEStreamingApi, message: RunMessage): Promise<void> {
  return stream.writeSSE({ event: "message", id: String(message.seq), data: JSON.stringify(message) });
}

/** The message a reader saw last (0: none), or null for something that is not one. */
function resumePoint(given: string | undefined): number | null {
  if (given === undefined || given.trim() === "") return 0;
  return /^\d{1,15}$/.test(given.trim()) ? Number(given.trim()) : null;
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
