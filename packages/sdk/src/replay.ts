/**
 * The replay of one invocation: every step call is matched against the stored steps.
 *
 * - Stored and completed: resolves the stored output at once.
 * - Stored and failed: rejects with a {@link StepError} at once (the function may catch it).
 * - Stored and pending: never settles; the executor is already handling it.
 * - Not stored: new work. It is planned (see `StepCall.plan`), collected, and never settles
 *   in this invocation; `execution.ts` decides what to report.
 *
 * A step whose name or kind differs from the stored step at its position (or whose ID is
 * stored with another kind) means the function changed under a live run: that is recorded
 * as non-determinism and fails the invocation instead of mixing up stored results.
 * Positions are call order, which is stable because the executor re-invokes a run only when
 * none of its steps is in flight, and stored results resolve in call order.
 */
import { textProblem, type StepKind, type StoredStep } from "@stepwise/protocol";
import { NonRetriableError, StepError } from "./errors.ts";
import { StepIdAllocator } from "./step-ids.ts";
import type { PlannedOp, StepCall, StepDispatcher } from "./step-tools.ts";

/** A step call as the replay identified it. */
export interface FoundStep {
  id: string;
  name: string;
  kind: StepKind;
  position: number;
  call: StepCall;
}

/** A step with nothing stored, and the op that describes it. */
export interface NewStep extends FoundStep {
  planned: PlannedOp;
  /** Settles the step's promise with its result, once that is durable (a checkpoint). */
  resolve: (output: unknown) => void;
}

const ADVICE =
  "A function's steps must not change while runs of it are in flight: keep the old steps until those runs finish, or deploy the change under a new function id.";

export class Replay {
  private readonly byId = new Map<string, StoredStep>();
  private readonly byPosition = new Map<number, StoredStep>();
  private readonly ids = new StepIdAllocator();
  private nextPosition = 0;
  private closed = false;
  private executing: string | undefined;
  private waiters: Array<() => void> = [];

  /** Steps with nothing stored, in call order. */
  readonly fresh: NewStep[] = [];
  /** The `targetStep` of the request, once the function called it. */
  target: FoundStep | undefined;
  /** Why the function does not match the stored run, if it does not. */
  nonDeterminism: string | undefined;
  /** Step calls so far. */
  calls = 0;
  /** Step calls whose promise will not settle in this invocation. */
  blocked = 0;

  /** Stored steps the function has not called again yet in this invocation. */
  private unread: Set<string>;
  /** Some stored step is still in the executor's hands (a parallel branch, a wait): what follows may run again. */
  private readonly somePending: boolean;

  constructor(
    steps: readonly StoredStep[],
    private readonly targetStep?: string,
  ) {
    for (const step of steps) {
      this.byId.set(step.id, step);
      this.byPosition.set(step.position, step);
    }
    this.unread = new Set(this.byId.keys());
    this.somePending = steps.some((step) => step.status === "pending");
  }

  /**
   * Whether code runs for real now rather than again: a step's code is running, or the function
   * has called every step stored before this invocation, none of them still in the executor's
   * hands, in an invocation not made for one step (what it does from here, it does for the first
   * time). A body's code between parallel branches that finished and others still running runs
   * again once they all have, so it is not live until then. Messages published meanwhile are
   * sent; the others were sent already, or will be.
   */
  get live(): boolean {
    if (this.executing !== undefined) return true;
    return this.targetStep === undefined && !this.somePending && this.unread.size === 0;
  }

  /** The dispatcher the step tools call. */
  readonly dispatch: StepDispatcher = (call) => this.handle(call);

  /**
   * Resolves at the next step call that blocks (a new step, or one stored as pending). Calls
   * that resolve from stored results do not wake the waiter: a replay of 1,000 stored steps
   * woke it 1,000 times, each a promise and a race, for a decision none of them changes.
   */
  nextBlocked(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** A step's code is about to run: a step tool called from inside it is an error. */
  startExecuting(stepId: string): void {
    this.executing = stepId;
  }

  /** A step's code has finished. */
  stopExecuting(): void {
    this.executing = undefined;
  }

  /**
   * A new `run` step's result was committed mid-invocation (a checkpoint): from now on it is a
   * stored step like any other, and the function goes on with its output.
   */
  resolveFresh(step: NewStep, output: unknown): void {
    const index = this.fresh.indexOf(step);
    if (index < 0) return;
    this.fresh.splice(index, 1);
    this.blocked--;
    const stored: StoredStep = { id: step.id, name: step.name, kind: step.kind, position: step.position, status: "completed", output };
    this.byId.set(step.id, stored);
    this.byPosition.set(step.position, stored);
    step.resolve(output);
  }

  /** The invocation is answered: later step calls (a handler left suspended) do nothing. */
  close(): void {
    this.closed = true;
  }

  private handle(call: StepCall): Promise<unknown> {
    if (this.closed) return new Promise(() => {});
    if (this.executing !== undefined) {
      // Otherwise the nested call would never settle and the outer step would hang.
      const message = `Step "${call.name}" (${call.kind}) was called inside step "${this.executing}": steps cannot be nested, call them from the function body`;
      return Promise.reject(new NonRetriableError(message));
    }
    if (typeof call.name !== "string" || call.name === "") {
      return Promise.reject(new TypeError(`A ${call.kind} step was called without a name: step names must be non-empty strings`));
    }
    const problem = textProblem(call.name);
    if (problem) {
      return Promise.reject(new NonRetriableError(`The name of a ${call.kind} step ${problem}: step names are stored as text and must be valid Unicode`));
    }
    const found: FoundStep = { id: this.ids.allocate(call.name), name: call.name, kind: call.kind, position: this.nextPosition++, call };
    this.calls++;
    this.unread.delete(found.id);
    this.checkDeterminism(found);
    if (this.nonDeterminism) return this.block();
    const stored = this.byId.get(found.id);
    if (this.targetStep !== undefined) {
      if (found.id === this.targetStep) {
        this.target = { ...found, position: stored?.position ?? found.position };
        return this.block();
      }
      // Only the target runs; other new steps wait for a later invocation.
      return stored ? this.fromStored(stored) : this.block();
    }
    return stored ? this.fromStored(stored) : this.discover(found);
  }

  private checkDeterminism(found: FoundStep): void {
    if (this.nonDeterminism) return;
    const atPosition = this.byPosition.get(found.position);
    if (atPosition && (atPosition.name !== found.name || atPosition.kind !== found.kind)) {
      this.nonDeterminism =
        `Step at position ${found.position} was "${atPosition.name}" (${atPosition.kind}) in the stored run, ` +
        `but the function now calls "${found.name}" (${found.kind}) there. ${ADVICE}`;
      return;
    }
    const stored = this.byId.get(found.id);
    if (stored && stored.kind !== found.kind) {
      this.nonDeterminism =
        `Step "${found.id}" was a ${stored.kind} step in the stored run, but the function now calls it as ${found.kind}. ${ADVICE}`;
    }
  }

  private fromStored(stored: StoredStep): Promise<unknown> {
    switch (stored.status) {
      case "completed":
        return Promise.resolve(stored.output ?? null);
      case "failed": {
        const error = new StepError(stored.id, stored.error ?? { name: "Error", message: `Step "${stored.id}" failed` });
        const rejected = Promise.reject(error);
        // Mark as handled: a function that never awaits it must not crash the process.
        rejected.catch(() => {});
        return rejected;
      }
      case "pending":
        return this.block();
    }
  }

  private discover(found: FoundStep): Promise<unknown> {
    let planned: PlannedOp;
    try {
      planned = found.call.plan();
    } catch (error) {
      return Promise.reject(error);
    }
    this.blocked++;
    this.wakeWaiters();
    // Settles only through a checkpoint (`resolveFresh`); otherwise the invocation ends first.
    return new Promise((resolve) => this.fresh.push({ ...found, planned, resolve }));
  }

  private block(): Promise<never> {
    this.blocked++;
    this.wakeWaiters();
    return new Promise<never>(() => {});
  }

  private wakeWaiters(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }
}
