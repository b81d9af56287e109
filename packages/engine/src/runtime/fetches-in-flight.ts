/**
 * The requests this executor is making for `step.fetch` and `step.ai.infer` steps, by run, so
 * that a run's end stops them: a cancelled agent neither waits for nor pays for a model call
 * whose answer it would drop anyway (an answer that comes after the end is never stored). An end
 * this executor commits aborts its requests at once; an end committed elsewhere (another
 * executor, a `cancelOn` event, a timeout) is found by one look at the record every
 * {@link ENDED_RUNS_CHECK_MS} while any request is out. A paused run's request goes on: its
 * answer is kept for the resume.
 */
import type { Logger } from "../log.ts";
import { describe } from "../errors.ts";

/** How often the record is asked which runs with requests out have ended. */
export const ENDED_RUNS_CHECK_MS = 1_000;

/** Why a request was stopped: read by the fetch step, which reports it as the run's end. */
export class RunEnded extends Error {
  constructor(readonly runId: string) {
    super(`run ${runId} ended`);
    this.name = "RunEnded";
  }
}

export class FetchesInFlight {
  private readonly byRun = new Map<string, Set<AbortController>>();
  private check: ReturnType<typeof setInterval> | undefined;
  private checking = false;
  private warned = false;

  constructor(private readonly options: { endedRuns(runIds: readonly string[]): Promise<string[]>; log: Logger; checkEveryMs?: number }) {}

  /** Tracks a request of `runId`: its signal aborts when the run ends; call `done` once it is answered. */
  track(runId: string): { signal: AbortSignal; done(): void } {
    const controller = new AbortController();
    let requests = this.byRun.get(runId);
    if (!requests) this.byRun.set(runId, (requests = new Set()));
    requests.add(controller);
    this.check ??= setInterval(() => void this.lookForEnds(), this.options.checkEveryMs ?? ENDED_RUNS_CHECK_MS);
    this.check.unref?.();
    return {
      signal: controller.signal,
      done: () => {
        requests.delete(controller);
        if (requests.size === 0 && this.byRun.get(runId) === requests) this.byRun.delete(runId);
        if (this.byRun.size === 0) this.stop();
      },
    };
  }

  /** The runs ended: their requests are aborted. */
  ended(runIds: Iterable<string>): void {
    for (const runId of runIds) for (const controller of this.byRun.get(runId) ?? []) controller.abort(new RunEnded(runId));
  }

  /** Stops looking (the executor stops; requests still out run to their own end). */
  stop(): void {
    clearInterval(this.check);
    this.check = undefined;
  }

  private async lookForEnds(): Promise<void> {
    if (this.checking || this.byRun.size === 0) return;
    this.checking = true;
    try {
      this.ended(await this.options.endedRuns([...this.byRun.keys()]));
      this.warned = false;
    } catch (error) {
      // The next look tries again; the request itself is bounded by its timeout.
      if (!this.warned) this.options.log.warn(`could not check whether runs with requests out have ended: ${describe(error)}; will retry`);
      this.warned = true;
    } finally {
      this.checking = false;
    }
  }
}
