/**
 * The unit of work: every change made in one transaction, across every run it touches. It
 * locks each run once and keeps one draft per run, so when an answer's effects come back to
 * the run that caused them (a run that sends its own `cancelOn` event, or the event its own
 * wait is waiting for) they apply to the same draft, after the answer, and the run's next
 * invocation is worked out once, at the end (`settle`). It then writes each run's change with
 * the store's one encoder.
 *
 * Events meet waits both ways round: an event delivered here finds the matchers already stored
 * and those opened earlier in this unit; a wait opened here looks back for events that arrived
 * since its run became due (`new-waits.ts`, which also claims a signal wait's name).
 */
import { CALLBACK_EVENT, DERIVED_ID_PREFIX, FUNCTION_FAILED_EVENT, toMs, type CallbackClaims } from "@stepwise/protocol";
import { NOT_A_CALLBACK } from "../callback-urls.ts";
import { InputError } from "../errors.ts";
import { isTerminal, type EventRecord, type FunctionRecord, type JobRecord, type MatcherRecord, type RunState } from "../records.ts";
import { evaluateCondition, matches } from "../expressions.ts";
import { machineEnv, type Committed, type EngineContext } from "../context.ts";
import { serializedError } from "../errors.ts";
import { RunDraft, type Effect, type LogLine, type MachineEnv } from "../machine/draft.ts";
import { settleChild } from "../machine/ending.ts";
import { settle } from "../machine/progress.ts";
import { newRun } from "../machine/start.ts";
import { finish } from "../machine/ending.ts";
import { admit, needsAdmission } from "./admission.ts";
import { placeInBatch } from "./batching.ts";
import { concurrencySlots } from "../concurrency.ts";
import { priorityOf } from "./priority.ts";
import { formatDuration, runLabel } from "../log.ts";
import { formatBytes, jsonBytes } from "../limits.ts";
import { stepAttemptFailed } from "../machine/steps.ts";
import { cancelOnEvent, matcherAccepts, resolveWait } from "../machine/waits.ts";
import { deliverSignal, settleNewWaits, type NewWait, type WaitsUnit } from "./new-waits.ts";
import { changeOnlyAdds, type StoreTx, type WriteResult } from "../store.ts";

export interface UnitOptions {
  /** The worker that applies this unit runs the run's next invocation itself, when it is due at once. */
  continuation?: { runId: string; owner: string; leaseMs: number; holdsSlot: boolean };
  /** When the invoked job became due (store clock): waits opened now look back to then. */
  readyAt?: Date;
  /**
   * Runs started in this unit whose first invocation this process runs at once, up to `max`
   * (its free lanes): their jobs are written leased to `owner`, and they need no claim or read.
   */
  adopt?: { owner: string; leaseMs: number; max: number };
}

export interface UnitOutcome extends Committed {
  continued?: JobRecord;
  /** First invocations of new runs, leased to the adopting worker (see `UnitOptions.adopt`). */
  adopted: JobRecord[];
  /** Each written run as it now stands (the next invocation's snapshot). */
  states: Map<string, RunState>;
}

interface Entry {
  draft: RunDraft;
  version: number;
  isNew: boolean;
}

export class UnitOfWork implements WaitsUnit {
  private readonly entries = new Map<string, Entry>();
  /** Waits opened in this unit that `settleNewWaits` has seen. */
  private readonly settledWaits = new Set<MatcherRecord>();
  /**
   * Stored matchers by event name, read once per unit: nothing here writes matchers before the
   * commit, so a batch of events of one name needs one read, not one per event.
   */
  private readonly storedMatchers = new Map<string, MatcherRecord[]>();
  /** Lines about the unit itself rather than one run's transition. */
  private readonly lines: LogLine[] = [];

  constructor(
    readonly tx: StoreTx,
    readonly ctx: EngineContext,
    private readonly options: UnitOptions = {},
  ) {}

  env(draft: RunDraft): MachineEnv {
    return machineEnv(this.ctx, draft.run.functionId);
  }

  now(): number {
    return this.ctx.clock.now();
  }

  loaded(runId: string): RunDraft | undefined {
    return this.entries.get(runId)?.draft;
  }

  async appOfRun(runId: string): Promise<string | undefined> {
    // A run's function never changes: read without its lock.
    const functionId = this.loaded(runId)?.run.functionId ?? (await this.tx.getRun(runId))?.functionId;
    return functionId === undefined ? undefined : this.ctx.registry.cachedFunction(functionId)?.appId;
  }

  /** The run, locked for the rest of the transaction; the same draft on every call. */
  async load(runId: string): Promise<RunDraft | null> {
    const known = this.entries.get(runId);
    if (known) return known.draft;
    const state = await this.tx.lockRun(runId);
    if (!state) return null;
    const draft = new RunDraft(state);
    this.entries.set(runId, { draft, version: state.run.version, isNew: false });
    return draft;
  }

  /** A new run, inserted at the commit with every other run this unit starts (one statement for a burst). */
  async startRun(fn: FunctionRecord, event: EventRecord, parent?: { runId: string; stepId: string }): Promise<RunDraft> {
    const slots = fn.config.concurrency === undefined ? undefined : await concurrencySlots(fn, event);
    const draft = newRun(fn, event, { now: this.ctx.clock.now() }, parent, slots, this.ctx.registry.cachedApp(fn.appId)?.version);
    if (fn.config.priority) {
      const { seconds, problem } = priorityOf(fn.config.priority.run, event);
      if (seconds !== 0) draft.delayStart(-seconds * 1_000);
      if (problem) this.lines.push({ level: "warn", line: `${runLabel(draft.run.id, fn.id)}: ${problem}` });
    }
    this.entries.set(draft.run.id, { draft, version: draft.run.version, isNew: true });
    return draft;
  }

  /** Stores events (validated by the caller) and applies what they cause; returns the new ones. */
  async ingest(events: EventRecord[]): Promise<EventRecord[]> {
    const unique = [...new Map(events.map((event) => [event.id, event])).values()];
    const inserted = await this.tx.insertEvents(unique);
    this.reportDerivedConflicts(unique, inserted);
    for (const event of inserted) await this.deliver(event);
    return inserted;
  }

  /**
   * Stores a signal (an event of the executor's signal name) and resumes the run waiting for it.
   * `duplicate` when an event with its ID is stored already (delivered before: nothing happens);
   * undefined when no run waits for it: the caller rolls the transaction back, so a signal nobody
   * took is never stored.
   */
  async signal(event: EventRecord): Promise<{ runId: string; stepId: string } | "duplicate" | undefined> {
    const [stored] = await this.tx.insertEvents([event]);
    if (!stored) return "duplicate";
    return deliverSignal(this, stored);
  }

  /**
   * Takes the POST to a callback URL of `claims`' run (`event`, as `callback-urls.ts` made it):
   * stored, and the run's wait for it resolved if it waits already (else it reads the POST when
   * its wait opens). Throws {@link InputError}, which rolls the transaction back: 404 for a run
   * that is gone, 403 for a token of another app, 410 for a run that ended or a URL past its time
   * on the store's clock (the clock the wait's timeout is judged by), 409 for a callback that had
   * its POST already.
   */
  async callback(claims: CallbackClaims, event: EventRecord): Promise<void> {
    const draft = await this.load(claims.runId);
    if (!draft) throw new InputError(`The run of this callback URL (${claims.runId}) no longer exists`, 404);
    // The token's key is its app's: one app's key never reaches another app's run.
    if ((await this.appOfRun(claims.runId)) !== claims.appId) throw new InputError(NOT_A_CALLBACK, 403);
    if (isTerminal(draft.run.status)) throw new InputError(`The run of this callback URL (${claims.runId}) has ended (${draft.run.status}); it takes no more callbacks`, 410);
    const [stored] = await this.tx.insertEvents([event]);
    if (!stored) throw new InputError("This callback URL was used already: each takes one POST, and its run has it", 409);
    // Only this run's wait: a rerun copies steps, and its callback's ID with them.
    const callback = (event.data as { callback: string }).callback;
    let delivered = false;
    for (const matcher of await this.tx.findMatchers(CALLBACK_EVENT, callback)) {
      if (matcher.runId === draft.run.id && resolveWait(draft, this.env(draft), matcher.stepId, stored)) delivered = true;
    }
    // Not taken by a wait: kept for one still to come, unless the URL's time is up by the store's
    // clock, read after the lookup (whose own clock read found the wait expired, if it is open).
    if (!delivered && claims.expiresAt <= (await this.tx.now())) {
      throw new InputError(`This callback URL expired at ${new Date(claims.expiresAt).toISOString()}; the run no longer waits for it`, 410);
    }
  }

  /**
   * Senders cannot use derived IDs, and the executor writes each once (with the step that sent
   * it), so one already taken means the record holds something this code did not expect: said
   * loudly, never skipped in silence. The event stored first stands.
   */
  private reportDerivedConflicts(wanted: EventRecord[], inserted: EventRecord[]): void {
    const stored = new Set(inserted.map((event) => event.id));
    for (const event of wanted) {
      if (stored.has(event.id) || !event.id.startsWith(DERIVED_ID_PREFIX)) continue;
      this.lines.push({ level: "error", line: `event ${event.id} (${event.name}) was not stored: an event with this derived ID already exists` });
    }
  }

  /** Cancels and resumes the runs whose matchers `event` meets, and starts the runs it triggers. */
  private async deliver(event: EventRecord): Promise<void> {
    const candidates = new Map<string, MatcherRecord>();
    let stored = this.storedMatchers.get(event.name);
    if (!stored) this.storedMatchers.set(event.name, (stored = await this.tx.findMatchers(event.name)));
    for (const matcher of stored) {
      if (!this.entries.get(matcher.runId)?.draft.closedMatcher(matcher.stepId)) candidates.set(`${matcher.runId}\n${matcher.stepId}`, matcher);
    }
    // Matchers opened earlier in this unit are not in the store yet.
    for (const { draft } of this.entries.values()) {
      for (const matcher of draft.pendingMatchers()) {
        if (matcher.eventName === event.name) candidates.set(`${matcher.runId}\n${matcher.stepId}`, matcher);
      }
    }
    // Cancellations first (a run cancelled by this event does not also resume on it); runs in ID order, so
    // transactions lock runs in the same order.
    const ordered = [...candidates.values()].sort(
      (a, b) => (a.kind === b.kind ? 0 : a.kind === "cancel" ? -1 : 1) || a.runId.localeCompare(b.runId),
    );
    for (const matcher of ordered) {
      // The frozen match value is checked before taking the run's lock.
      if (matcher.matchPath !== undefined && (matcher.matchValue === undefined || !matches({ matchPath: matcher.matchPath, matchValue: matcher.matchValue }, undefined, event))) continue;
      const draft = await this.load(matcher.runId);
      if (!draft || isTerminal(draft.run.status) || !matcherAccepts(matcher, draft.event, event)) continue;
      if (matcher.kind === "cancel") cancelOnEvent(draft, this.env(draft), event);
      else resolveWait(draft, this.env(draft), matcher.stepId, event);
    }
    for (const fn of this.ctx.registry.triggeredBy(event.name)) {
      // A failure carries the failed run's error and event: only its own app's functions hear of it.
      if (event.name === FUNCTION_FAILED_EVENT && fn.appId !== (event.data as { appId?: unknown } | null)?.appId) continue;
      const wanted = fn.config.triggers.some((t) => t.event === event.name && (!t.if || evaluateCondition(t.if, { event })));
      if (wanted) await this.startTriggered(fn, event);
    }
  }

  /**
   * Starts `fn` for `event` (a trigger or a cron tick) as its flow control admits it (see
   * `admission.ts`); the run, unless none was created.
   */
  async startTriggered(fn: FunctionRecord, event: EventRecord): Promise<RunDraft | undefined> {
    const draft = await this.startRun(fn, event);
    // Most functions have no flow control: a burst of their events takes no extra step here.
    if (!needsAdmission(fn)) return draft;
    // Batched functions take none of the checks (the configuration refuses them together).
    if (fn.config.batchEvents) return this.batch(fn, event, draft);
    const admission = await admit(this.tx, fn, event, draft.run.id, this.pendingHere);
    if (admission.start === false) {
      this.entries.delete(draft.run.id);
      this.lines.push({ level: "info", line: admission.line });
      return undefined;
    }
    if (admission.start === "skip") {
      finish(draft, this.env(draft), { status: "skipped", reason: admission.reason });
      return draft;
    }
    if (admission.delayMs) draft.delayStart(admission.delayMs);
    if (admission.why) this.lines.push({ level: "info", line: `${runLabel(draft.run.id, fn.id)}: ${admission.why}` });
    if (admission.warning) this.lines.push({ level: "warn", line: `${runLabel(draft.run.id, fn.id)}: ${admission.warning}` });
    if (admission.replaces) {
      // The run this one replaces (a singleton's live run, a debounce's earlier event) ends for it.
      const { runId, status, reason } = admission.replaces;
      const replaced = await this.load(runId);
      if (replaced && !isTerminal(replaced.run.status)) finish(replaced, this.env(replaced), { status, reason });
    }
    return draft;
  }

  /** What this unit knows of a run holding a debounce or batch that the record cannot tell yet (see `PendingHere`). */
  private readonly pendingHere = (runId: string): boolean | undefined => {
    const entry = this.entries.get(runId);
    if (!entry) return undefined;
    if (isTerminal(entry.draft.run.status)) return false;
    return entry.isNew ? true : undefined;
  };

  /**
   * `batchEvents`: the event opens a batch with `draft`, its run, due at the batch's timeout; or
   * it joins the open batch (and `draft` is dropped), starting that batch's run when it is full.
   */
  private async batch(fn: FunctionRecord, event: EventRecord, draft: RunDraft): Promise<RunDraft | undefined> {
    const { maxSize, timeout } = fn.config.batchEvents!;
    const place = await placeInBatch(this.tx, fn, event, draft.run.id, { maxBytes: this.ctx.limits.maxBatchBytes, pendingHere: this.pendingHere });
    // Its `if` does not hold: it runs alone, at once.
    if (!place) return draft;
    if (place.closed) await this.startBatch(place.closed, `its batch had no room for the ${formatBytes(jsonBytes(event))} of event ${event.id}`);
    if (place.runId === draft.run.id) {
      draft.openedBatch();
      if (place.full) return draft;
      draft.delayStart(toMs(timeout));
      this.lines.push({ level: "info", line: `${runLabel(draft.run.id, fn.id)}: batch opened, starts in ${formatDuration(toMs(timeout))} or once it holds ${maxSize} events` });
      return draft;
    }
    this.entries.delete(draft.run.id);
    // A batch run this unit already holds keeps its snapshot whole (one loaded later reads the store).
    this.entries.get(place.runId)?.draft.joinedBatch(event);
    this.lines.push({ level: "info", line: `event ${event.id} (${event.name}) joins the batch of ${runLabel(place.runId, fn.id)}: ${place.size} of ${maxSize}` });
    if (place.full) await this.startBatch(place.runId, `its batch is full (${maxSize} events)`);
    return undefined;
  }

  /** A batch's run starts now (it filled up, or must make room), whenever it was due. */
  private async startBatch(runId: string, why: string): Promise<void> {
    const draft = await this.load(runId);
    if (!draft || isTerminal(draft.run.status)) return;
    draft.startNow();
    this.lines.push({ level: "info", line: `${runLabel(runId, draft.run.functionId)}: starts now, ${why}` });
  }

  /** Carries out every effect and look-back, then writes each run's change. */
  async commit(): Promise<UnitOutcome> {
    await this.runEffects();
    const outcome: UnitOutcome = { lines: [...this.lines], signals: [], queued: [], deleted: [], adopted: [], states: new Map() };
    const { continuation, adopt } = this.options;
    let adopting = 0;
    const started: Array<{ runId: string; draft: RunDraft }> = [];
    for (const [runId, entry] of this.entries) {
      const { draft } = entry;
      settle(draft);
      if (continuation?.runId === runId) draft.leaseNext(continuation, continuation.holdsSlot);
      // A new run holds no slot of its limits yet: it waits for a claim, which grants one.
      else if (adopt && entry.isNew && adopting < adopt.max && draft.leaseNext(adopt, false)) adopting++;
      outcome.lines.push(...draft.lines);
      outcome.signals!.push(...draft.signals);
      if (entry.isNew) started.push({ runId, draft });
    }
    const record = (runId: string, draft: RunDraft, written: WriteResult) => {
      outcome.queued.push(...written.queued);
      outcome.deleted.push(...written.deleted);
      if (written.continued && continuation?.runId === runId) outcome.continued = written.continued;
      else if (written.continued) outcome.adopted.push(written.continued);
      outcome.states.set(runId, draft.state(written.version));
    };
    for (const [runId, entry] of this.entries) {
      if (entry.isNew || entry.draft.isEmpty) continue;
      record(runId, entry.draft, await this.tx.writeChange(runId, entry.version, entry.draft.change));
    }
    if (started.length === 0) return outcome;
    // Runs started here are created last (leases of adopted first invocations start as close to
    // the commit as can be), in one write with what their first change adds: nearly always all of it.
    const created = await this.tx.insertRuns(started.map(({ draft }) => ({ run: draft.run, change: changeOnlyAdds(draft.change) ? draft.change : undefined })));
    for (const { runId, draft } of started) {
      const written = created.get(runId);
      // IDs are new and unique: a clash means the record holds what this code did not write.
      if (!written) throw new Error(`could not start run ${runId}: its ID is already taken`);
      if (written.held) {
        draft.heldAtStart(new Date(this.ctx.clock.now()));
        outcome.lines.push({ level: "info", line: `${runLabel(runId, draft.run.functionId)} held: its function is paused` });
      }
      record(runId, draft, changeOnlyAdds(draft.change) ? written : await this.tx.writeChange(runId, draft.run.version, draft.change));
    }
    return outcome;
  }

  private async runEffects(): Promise<void> {
    for (;;) {
      const effects = [...this.entries.values()].flatMap(({ draft }) => draft.takeEffects());
      if (effects.length > 0) {
        for (const effect of effects) await this.apply(effect);
        continue;
      }
      const waits = this.newWaits();
      if (waits.length === 0) return;
      await settleNewWaits(this, waits, this.options.readyAt);
    }
  }

  private async apply(effect: Effect): Promise<void> {
    switch (effect.type) {
      case "send":
        await this.ingest(effect.events);
        return;
      case "start-child": {
        const [stored] = await this.tx.insertEvents([effect.event]);
        if (stored) {
          await this.startRun(effect.fn, effect.event, effect.parent);
          return;
        }
        // The derived ID was taken by an event the executor did not write: do not start a child on foreign data.
        const parent = await this.load(effect.parent.runId);
        const step = parent?.step(effect.parent.stepId);
        if (parent && step?.status === "invoking") {
          const error = serializedError("InvokeEventConflict", `step.invoke "${step.name}": an event with ID ${effect.event.id} already exists`);
          stepAttemptFailed(parent, this.env(parent), { ...step, status: "planned" }, error, false);
        }
        return;
      }
      case "settle-parent": {
        const parent = await this.load(effect.parentRunId);
        if (parent) settleChild(parent, this.env(parent), effect.stepId, effect.childRunId, effect.ending);
        return;
      }
      case "mint-callback": {
        const draft = await this.load(effect.runId);
        const step = draft?.step(effect.stepId);
        if (!draft || step?.status !== "planned") return;
        const env = this.env(draft);
        try {
          const callback = await this.ctx.callbacks.mint({ appId: env.fn?.appId ?? "", runId: draft.run.id, stepId: step.id, expiresAt: effect.expiresAt });
          draft.saveStep({ ...step, status: "completed", output: callback, attempts: 1, endedAt: new Date(env.now) });
          draft.info(`${runLabel(draft.run.id, draft.run.functionId)} step "${step.name}" created a callback URL, valid until ${callback.expiresAt}`);
        } catch (error) {
          stepAttemptFailed(draft, env, step, serializedError("CallbackUnavailable", `step.createCallback "${step.name}": ${(error as Error).message}`), false);
        }
        return;
      }
    }
  }

  /** Waits opened since the last call, still waiting. */
  private newWaits(): NewWait[] {
    const waits: NewWait[] = [];
    for (const { draft } of this.entries.values()) {
      for (const matcher of draft.openedWaits) {
        if (this.settledWaits.has(matcher)) continue;
        this.settledWaits.add(matcher);
        if (draft.step(matcher.stepId)?.status === "waiting") waits.push({ draft, matcher });
      }
    }
    return waits;
  }
}
