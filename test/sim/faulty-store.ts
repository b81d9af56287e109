/**
 * One executor's view of the store, with the faults of its process: it can crash at its k-th
 * store call (that call and every later one fail, inside a transaction too, so the transaction
 * rolls back), or stall there for longer than a lease (a GC pause, a stuck connection), then go
 * on as if nothing happened. Every call in between reaches the real store unchanged.
 *
 * It also notes, for the checker, when this executor read or committed a run's state (in the
 * async chain of the job doing it, so the invocation built from that state can be told) and
 * which runs' ends its commits acknowledged.
 */
import { isTerminal, type CheckpointResult, type CheckpointWrite, type Fence, type Queue, type RunChange, type EventQuery, type RunQuery, type RunState, type Store, type StoreTx, type WriteResult } from "@stepwise/engine";
import { readContext, type Ledger } from "./ledger.ts";

export class SimulatedCrash extends Error {
  override name = "SimulatedCrash";
  constructor(executor: string) {
    super(`executor ${executor} has crashed (simulated)`);
  }
}

export class FaultyStore implements Store {
  readonly queue: Queue;
  dead = false;
  claims = 0;
  /** Claims that came back with jobs. */
  fruitfulClaims = 0;
  /** The run of every job this executor got, to name the run when a lease turns out lost. */
  private readonly jobRuns = new Map<string, string>();
  private calls = 0;
  private crashAt: number | undefined;
  private stallAt: { call: number; ms: number } | undefined;

  constructor(
    private readonly inner: Store,
    readonly name: string,
    private readonly ledger: Ledger,
  ) {
    const q = inner.queue;
    this.queue = {
      claim: (...args) => this.call(async () => {
        this.claims++;
        const jobs = await q.claim(...args);
        if (jobs.length > 0) this.fruitfulClaims++;
        for (const job of jobs) this.jobRuns.set(job.id, job.runId);
        return jobs;
      }),
      extendLeases: (...args) => this.call(() => q.extendLeases(...args)),
      release: (...args) => this.call(() => q.release(...args)),
      afterCommit: (...args) => this.call(() => q.afterCommit(...args)),
      slotsFreed: (...args) => this.call(() => q.slotsFreed(...args)),
      nextDueIn: () => this.call(() => q.nextDueIn()),
      reconcile: () => this.call(() => q.reconcile()),
      releaseAllLeases: () => this.call(() => q.releaseAllLeases()),
      // What the queue tells in the background is its own calls, not the executor's: no fault here.
      settled: () => q.settled?.() ?? Promise.resolve(),
    };
  }

  /** Crash at the `after`-th store call from now. */
  crashAfter(after: number): void {
    this.crashAt = this.calls + Math.max(1, after);
  }

  /** Stall for `ms` at the `after`-th store call from now. */
  stallAfter(after: number, ms: number): void {
    this.stallAt = { call: this.calls + Math.max(1, after), ms };
  }

  private async gate(): Promise<void> {
    if (this.dead) throw new SimulatedCrash(this.name);
    this.calls++;
    if (this.crashAt !== undefined && this.calls >= this.crashAt) {
      this.dead = true;
      this.ledger.crash(this.name);
      throw new SimulatedCrash(this.name);
    }
    if (this.stallAt && this.calls >= this.stallAt.call) {
      const { ms } = this.stallAt;
      this.stallAt = undefined;
      const from = Date.now();
      this.ledger.stall(this.name, from, from + ms);
      await new Promise((resolve) => setTimeout(resolve, ms));
    }
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    await this.gate();
    return fn();
  }

  private ack(runId: string, change: RunChange): void {
    if (change.run.status && isTerminal(change.run.status) && !this.ledger.endsAcked.has(runId)) this.ledger.endsAcked.set(runId, Date.now());
  }

  migrate(): Promise<void> {
    return this.call(() => this.inner.migrate());
  }

  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    readContext.enterWith({ at: Date.now() });
    const ended: Array<[string, RunChange]> = [];
    return this.call(async () => {
      const result = await this.inner.transaction((tx) => {
        ended.length = 0;
        return fn(this.wrapTx(tx, ended));
      });
      for (const [runId, change] of ended) this.ack(runId, change);
      return result;
    });
  }

  private wrapTx(tx: StoreTx, ended: Array<[string, RunChange]>): StoreTx {
    const c = <A extends unknown[], R>(fn: (...args: A) => Promise<R>) => (...args: A) => this.call(() => fn(...args));
    return {
      completeJob: c(async (fence: Fence) => {
        const done = await tx.completeJob(fence);
        const runId = this.jobRuns.get(fence.jobId);
        if (!done && runId) this.ledger.leaseLost(this.name, runId);
        return done;
      }),
      lockRun: c((runId: string) => tx.lockRun(runId)),
      writeChange: c(async (runId: string, version: number, change: RunChange) => {
        const written = await tx.writeChange(runId, version, change);
        ended.push([runId, change]);
        if (written.continued) this.jobRuns.set(written.continued.id, runId);
        return written;
      }),
      insertRuns: c((runs) => tx.insertRuns(runs)),
      insertRunEvents: c((runId, eventIds) => tx.insertRunEvents(runId, eventIds)),
      insertEvents: c((events) => tx.insertEvents(events)),
      lockWaits: c((names) => tx.lockWaits(names)),
      firstEventSince: c((name, since, until, accept, dataContains) => tx.firstEventSince(name, since, until, accept, dataContains)),
      findMatchers: c((name, value) => tx.findMatchers(name, value)),
      dropMatcher: c((runId, stepId) => tx.dropMatcher(runId, stepId)),
      getRun: c((runId) => tx.getRun(runId)),
      now: c(() => tx.now()),
      getEvent: c((id) => tx.getEvent(id)),
      queueCronTick: c((tick) => tx.queueCronTick(tick)),
      reserveIdempotencyKey: c((functionId, key, runId, ttlMs) => tx.reserveIdempotencyKey(functionId, key, runId, ttlMs)),
      takeRateLimit: c((functionId, key, intervalMs, toleranceMs) => tx.takeRateLimit(functionId, key, intervalMs, toleranceMs)),
      takeThrottle: c((functionId, key, intervalMs, toleranceMs, maxDelayMs) => tx.takeThrottle(functionId, key, intervalMs, toleranceMs, maxDelayMs)),
      takeSingleton: c((functionId, key, runId, force, pendingHere) => tx.takeSingleton(functionId, key, runId, force, pendingHere)),
      takeDebounce: c((functionId, key, runId, pendingHere) => tx.takeDebounce(functionId, key, runId, pendingHere)),
      placeInBatch: c((place, pendingHere) => tx.placeInBatch(place, pendingHere)),
    };
  }

  loadRunState(runId: string, options?: { maxOutputBytes?: number }): Promise<RunState | null> {
    readContext.enterWith({ at: Date.now() });
    return this.call(() => this.inner.loadRunState(runId, options));
  }

  applyOptimistically(state: RunState, fence: Fence, change: RunChange): Promise<WriteResult | null> {
    readContext.enterWith({ at: Date.now() });
    return this.call(async () => {
      const written = await this.inner.applyOptimistically(state, fence, change);
      if (written) this.ack(state.run.id, change);
      if (written?.continued) this.jobRuns.set(written.continued.id, state.run.id);
      return written;
    });
  }

  checkpoint(write: CheckpointWrite): Promise<CheckpointResult> {
    return this.call(() => this.inner.checkpoint(write));
  }

  syncApp(...args: Parameters<Store["syncApp"]>) {
    return this.call(() => this.inner.syncApp(...args));
  }
  listApps() {
    return this.call(() => this.inner.listApps());
  }
  markDeploymentGone(...args: Parameters<Store["markDeploymentGone"]>) {
    return this.call(() => this.inner.markDeploymentGone(...args));
  }
  deploymentRefused(...args: Parameters<Store["deploymentRefused"]>) {
    return this.call(() => this.inner.deploymentRefused(...args));
  }
  deploymentAnswered(...args: Parameters<Store["deploymentAnswered"]>) {
    return this.call(() => this.inner.deploymentAnswered(...args));
  }
  listFunctions() {
    return this.call(() => this.inner.listFunctions());
  }
  setFunctionPaused(...args: Parameters<Store["setFunctionPaused"]>) {
    return this.call(() => this.inner.setFunctionPaused(...args));
  }
  findUnreleasedHolds(limit: number) {
    return this.call(() => this.inner.findUnreleasedHolds(limit));
  }
  listHeldRuns(functionId: string, limit: number) {
    return this.call(() => this.inner.listHeldRuns(functionId, limit));
  }
  getRun(runId: string) {
    return this.call(() => this.inner.getRun(runId));
  }
  endedRuns(runIds: readonly string[]) {
    return this.call(() => this.inner.endedRuns(runIds));
  }
  listSteps(runId: string, options?: { ids?: readonly string[] }) {
    return this.call(() => this.inner.listSteps(runId, options));
  }
  getEvent(eventId: string) {
    return this.call(() => this.inner.getEvent(eventId));
  }
  listRuns(query: RunQuery) {
    return this.call(() => this.inner.listRuns(query));
  }
  getEvents(eventIds: readonly string[]) {
    return this.call(() => this.inner.getEvents(eventIds));
  }
  listRunsByEvent(eventId: string) {
    return this.call(() => this.inner.listRunsByEvent(eventId));
  }
  listEvents(query: EventQuery) {
    return this.call(() => this.inner.listEvents(query));
  }
  listRunsByEvents(eventIds: readonly string[]) {
    return this.call(() => this.inner.listRunsByEvents(eventIds));
  }

  listBatchEventIds(runId: string) {
    return this.call(() => this.inner.listBatchEventIds(runId));
  }
  appendRunMessages(runId: string, messages: ReadonlyArray<{ topic: string; data: string }>) {
    return this.call(() => this.inner.appendRunMessages(runId, messages));
  }
  readRunMessages(runId: string, afterSeq: number, limit: number) {
    return this.call(() => this.inner.readRunMessages(runId, afterSeq, limit));
  }
  queueStats() {
    return this.call(() => this.inner.queueStats());
  }
  findStrandedRuns(minAgeMs: number, limit: number) {
    return this.call(() => this.inner.findStrandedRuns(minAgeMs, limit));
  }
  prune(olderThanMs: number, limit: number) {
    return this.call(() => this.inner.prune(olderThanMs, limit));
  }
  pruneFlowControl(limit: number) {
    return this.call(() => this.inner.pruneFlowControl(limit));
  }
  /** The real store is shared by every executor of the simulation: closing one executor leaves it open. */
  async close(): Promise<void> {}
}
