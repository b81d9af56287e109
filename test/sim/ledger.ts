/**
 * What the simulation saw happen, kept outside the system under test: every invocation the
 * executors sent (with the fault it met), every step body that ran and in which invocation,
 * every crash and stall of an executor. The invariants are judged against this and the store.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { StepRunContext } from "@stepwise/sdk";

/** How an invocation's answer fared on its way back. */
export type Delivery =
  | "delivered"
  /** The app never saw it: refused, or a 502 page from in front of the app. */
  | "not-sent"
  /** The app ran it, but the executor never got the answer (502 after, timeout, cut off, garbage). */
  | "lost";

export interface Invocation {
  id: number;
  executor: string;
  runId: string;
  /** The host the executor sent it to: which deployment. */
  host: string;
  targetStep?: string;
  /** When the executor's fetch was called. */
  sentAt: number;
  answeredAt?: number;
  /** When the executor's call ended, however (answered, refused, timed out). */
  endedAt?: number;
  fault: string;
  delivery: Delivery;
  /** Wait steps the answer reported, if any. */
  waits: string[];
  /** When the state this invocation was built from was read (or committed) by its executor. */
  readAt?: number;
  /** The checkpoint token the executor gave it: its checkpoints, alone or batched with others, carry it. */
  checkpointToken?: string;
}

export interface BodyRun {
  runId: string;
  stepId: string;
  invocation: number | undefined;
  at: number;
  /** The token the body returned in its output, or undefined when it threw. */
  token?: string;
  /** The token it was given, whether it returned it or threw (what it published). */
  issued: string;
  /** The step's own retries, when it sets them (else its function's apply). */
  retries?: number;
  /** What the SDK told the body: its idempotency key and attempt. */
  context: StepRunContext;
}

/** One signal the simulation sent, and how the executors answered in the end. */
export interface SignalSend {
  signal: string;
  /** The ID it was sent with (its sender's own, the same when it is sent again). */
  id: string;
  from: number;
  to: number;
  /** `duplicate` for a resend, or for a first send whose delivery committed but whose answer was lost. */
  outcome: "delivered" | "duplicate" | "refused";
  runId?: string;
  stepId?: string;
}

/** One request an executor made for a run's `step.fetch`, as the other side saw it. */
export interface FetchCall {
  executor: string;
  runId: string;
  stepId: string;
  at: number;
  /** When it was answered, or dropped by the executor (`dropped`); unset while it is out. */
  endedAt?: number;
  dropped?: boolean;
}

/** One POST the simulation made to a run's callback URL, and how it was answered in the end. */
export interface CallbackPost {
  runId: string;
  /** The callback step's ID. */
  stepId: string;
  /** What it posted: `{ post: <n> }`. */
  body: { post: number };
  from: number;
  to: number;
  /** The HTTP status the executors answered with, at the last try. */
  status: number;
}

/** A lease can run out this long after the disturbance that stopped its heartbeat began. */
const LEASE_SLACK_MS = 2_000;

/** The invocation a step body runs in (set around the app's handler). */
export const invocationContext = new AsyncLocalStorage<number>();

/** When an executor last read or committed a run's state, in the async chain of the job doing it. */
export const readContext = new AsyncLocalStorage<{ at: number }>();

export class Ledger {
  readonly invocations: Invocation[] = [];
  readonly bodies: BodyRun[] = [];
  /** Per executor: when it crashed or was stopped, and the times it stalled (start, end). */
  readonly crashes = new Map<string, number>();
  readonly stops = new Map<string, number>();
  /** Jobs whose commit found the lease gone: executor, run, when. */
  readonly leaseLosses: Array<{ executor: string; runId: string; at: number }> = [];
  readonly stalls = new Map<string, Array<[number, number]>>();
  /** Runs whose end an executor's commit acknowledged, and when. */
  readonly endsAcked = new Map<string, number>();
  readonly faults = new Map<string, number>();
  /**
   * Checkpoints the app heard not committed, by invocation: refused by the executor (409), or
   * failed on the way (a refused connection, a 5xx, an answer cut off). After one, the app must
   * run no further step in that invocation.
   */
  readonly refusedCheckpoints: Array<{ invocation: number; runId: string; stepId: string; at: number; how: "refused" | "failed" }> = [];
  /** Checkpoints that came from no invocation the ledger knows (by run and token): each is a violation. */
  readonly unattributedCheckpoints: Array<{ runId: string; stepId: string }> = [];
  /** When a pause of each run was acknowledged (its commit came before). */
  readonly pauses: Array<{ runId: string; at: number }> = [];
  /** When the first version's deployment was deleted (versioned deploys), if it was. */
  firstDeploymentDeletedAt: number | undefined;
  /** POSTs to callback URLs, with their answers. */
  readonly callbackPosts: CallbackPost[] = [];
  /** Requests the executors made for `step.fetch` steps. */
  readonly fetchCalls: FetchCall[] = [];
  /** Signals sent from outside, with their answers (sends that never got one are not here). */
  readonly signals: SignalSend[] = [];
  /** Checkpoints the app heard committed. */
  checkpointsCommitted = 0;
  /** The size of each batch of checkpoints the app sent (checkpoints sent alone are not here). */
  readonly checkpointBatches: number[] = [];
  /** Reads of left-out outputs that reached an executor. */
  outputReads = 0;
  /** Publishes an executor took (answered 200). */
  publishesTaken = 0;
  private tokens = 0;

  invocation(fields: Omit<Invocation, "id" | "waits">): Invocation {
    const invocation: Invocation = { ...fields, id: this.invocations.length + 1, waits: [] };
    this.invocations.push(invocation);
    if (fields.fault !== "none") this.faults.set(fields.fault, (this.faults.get(fields.fault) ?? 0) + 1);
    return invocation;
  }

  /** A step body starts: returns its token, to be returned in its output. */
  body(runId: string, stepId: string, retries: number | undefined, context: StepRunContext): BodyRun {
    const token = `t${++this.tokens}`;
    const run: BodyRun = { runId, stepId, invocation: invocationContext.getStore(), at: Date.now(), token, issued: token, retries, context };
    this.bodies.push(run);
    return run;
  }

  /** The app's invocation is cut short (its process died): the executor will never hear an answer. */
  appCrashed(invocationId: number | undefined, kind: string): void {
    const invocation = this.invocationById(invocationId);
    if (invocation) {
      invocation.delivery = "lost";
      invocation.fault = kind;
    }
    this.fault(kind);
  }

  fault(kind: string): void {
    this.faults.set(kind, (this.faults.get(kind) ?? 0) + 1);
  }

  crash(executor: string): void {
    this.crashes.set(executor, Date.now());
    this.fault("executor crash");
  }

  /** An executor's commit found its lease on a job of `runId` gone (another took the job over). */
  leaseLost(executor: string, runId: string): void {
    this.leaseLosses.push({ executor, runId, at: Date.now() });
  }

  /** An operator paused the run: an invocation out at that moment loses its lease, and its uncommitted step runs again after the resume. */
  paused(runId: string): void {
    this.pauses.push({ runId, at: Date.now() });
    this.fault("run paused");
  }

  /** Whether any executor stalled, crashed or was stopped between `from` and `to`: what can make a lease run out. */
  disturbed(from: number, to: number): boolean {
    const stalled = [...this.stalls.values()].some((list) => list.some(([start, end]) => start <= to && end >= from));
    const crashed = [...this.crashes.values(), ...this.stops.values()].some((at) => at >= from - LEASE_SLACK_MS && at <= to);
    return stalled || crashed;
  }

  /** A graceful stop: jobs still running after the grace period are given back, their answers dropped. */
  stopped(executor: string): void {
    this.stops.set(executor, Date.now());
  }

  stall(executor: string, from: number, to: number): void {
    const list = this.stalls.get(executor) ?? [];
    list.push([from, to]);
    this.stalls.set(executor, list);
    this.fault("executor stall");
  }

  /**
   * The invocation a checkpoint came from, by its token: the latest sent with it that reached
   * the app. A batch carries several invocations' checkpoints, and is sent from whichever
   * async chain freed a lane, so the checkpoint's token, not the async context, says whose it is.
   * Consecutive invocations of one job share a token (an answer that only ran the next step is
   * committed under it: answered-step.ts); each is sent once the one before has answered, so the
   * latest is the one that can still checkpoint.
   */
  invocationOfCheckpoint(runId: string, token: string): Invocation | undefined {
    return this.invocations.findLast((i) => i.runId === runId && i.checkpointToken === token && i.delivery !== "not-sent");
  }

  invocationById(id: number | undefined): Invocation | undefined {
    return id === undefined ? undefined : this.invocations[id - 1];
  }

  /**
   * Why a body's result may legitimately not have been the one committed: its answer was lost
   * on the way, or its executor crashed or stalled (so its lease could run out) after it sent it.
   */
  excuse(body: BodyRun): string | null {
    const invocation = this.invocationById(body.invocation);
    if (!invocation) return null;
    // The executor's commit found the lease gone: fine only if something made leases run out.
    const lost = this.leaseLosses.find((l) => l.executor === invocation.executor && l.runId === invocation.runId && l.at >= invocation.sentAt);
    if (lost && this.disturbed(invocation.sentAt - LEASE_SLACK_MS, lost.at)) return "lease lost while an executor stalled or died";
    if (invocation.delivery === "lost") return `lost answer (${invocation.fault})`;
    if (this.pauses.some((p) => p.runId === invocation.runId && p.at >= invocation.sentAt)) return "run paused while its invocation was out";
    const crashed = this.crashes.get(invocation.executor);
    if (crashed !== undefined && crashed >= invocation.sentAt) return "executor crashed";
    const stopped = this.stops.get(invocation.executor);
    if (stopped !== undefined && stopped >= invocation.sentAt) return "executor stopped (jobs given back after the grace period)";
    if ((this.stalls.get(invocation.executor) ?? []).some(([, to]) => to >= invocation.sentAt)) return "executor stalled past its lease";
    return null;
  }
}
