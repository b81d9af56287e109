/**
 * The orchestrator's side of the probe: collects what the app process reports, and lets the
 * workloads wait for runs to finish.
 */
import { fork, type ChildProcess } from "node:child_process";
import type { ProbeMessage } from "./app.ts";

type Waiter = { count: number; resolve: () => void };

export class Recorder {
  /** W1: per run, when each step body ran (absolute ms). */
  readonly stepTimes = new Map<string, number[]>();
  /** W3: how late the step after a 2 s sleep started. */
  readonly lateness: number[] = [];
  /** W4: when the first step of each run started, by the tag in its event. */
  readonly firstStepAt = new Map<string, number>();
  private finished = 0;
  private waiters: Waiter[] = [];

  receive(message: ProbeMessage): void {
    if (message.type === "step") {
      const times = this.stepTimes.get(message.runId) ?? [];
      times.push(message.at);
      this.stepTimes.set(message.runId, times);
    } else if (message.type === "late") {
      this.lateness.push(message.ms);
    } else if (message.type === "first") {
      this.firstStepAt.set(message.tag, message.at);
    } else if (message.type === "finish") {
      this.finished++;
      this.waiters = this.waiters.filter((w) => (this.finished >= w.count ? (w.resolve(), false) : true));
    }
  }

  /** Runs finished so far. */
  get finishedCount(): number {
    return this.finished;
  }

  /**
   * Resolves once `count` more runs have finished; rejects if they have not within `timeoutMs`
   * (a run that failed never reports its end, and the bench would wait for it for good).
   */
  finishedAfter(count: number, timeoutMs = 5 * 60_000): Promise<void> {
    const target = this.finished + count;
    const started = this.finished;
    return new Promise((resolve, reject) => {
      if (this.finished >= target) return resolve();
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`${target - this.finished} of ${count} runs did not finish within ${timeoutMs / 1000} s (${this.finished - started} did): see the executor's log, written to the file STEPWISE_BENCH_LOG names`));
      }, timeoutMs);
      const waiter: Waiter = { count: target, resolve: () => (clearTimeout(timer), resolve()) };
      this.waiters.push(waiter);
    });
  }
}

/** Starts the bench app in its own process; resolves its /api/durable URL. */
export function startAppProcess(recorder: Recorder): Promise<{ url: string; child: ChildProcess }> {
  // STEPWISE_BENCH_PROFILE=<dir>: a CPU profile of the app too, written when it exits.
  const profile = process.env.STEPWISE_BENCH_PROFILE;
  const execArgv = ["--import", "tsx", ...(profile ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : [])];
  const child = fork(new URL("./app-process.ts", import.meta.url).pathname, [], { execArgv });
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`bench app exited with ${code}`)));
    // The app sends what a run's functions saw when the run finishes, as a list (see app-process.ts).
    child.on("message", (message: ProbeMessage | ProbeMessage[]) => {
      if (Array.isArray(message)) for (const seen of message) recorder.receive(seen);
      else if (message.type === "ready") resolve({ url: message.url, child });
    });
  });
}
