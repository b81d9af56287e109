/**
 * The ops that do not run code in the app: sleep, wait for an event, send events, invoke
 * another function. Each records the step and arranges what will settle it later (a timer,
 * a matcher, a child run); sending settles at once.
 */
import { FUNCTION_INVOKED_EVENT, type Op } from "@stepwise/protocol";
import type { Invocation } from "./apply.ts";
import type { Unit } from "./context.ts";
import { serializedError } from "./errors.ts";
import { valueAtPath } from "./expressions.ts";
import { ingestInTransaction, startRun } from "./ingest.ts";
import { runLabel } from "./log.ts";
import type { EventRecord, StepRecord } from "./records.ts";

type OpOf<K extends Op["op"]> = Extract<Op, { op: K }>;

export async function applySleepOp(unit: Unit, inv: Invocation, step: StepRecord, op: OpOf<"sleep">): Promise<void> {
  const wakeAt = new Date(op.until);
  await unit.saveStep({ ...step, status: "sleeping", wakeAt });
  await unit.enqueue([{ kind: "wake", runId: inv.run.id, stepId: step.id, runAt: wakeAt }]);
  unit.info(`${runLabel(inv.run.id, inv.fn.id)} step "${step.name}" sleeping until ${wakeAt.toISOString()}`);
}

export async function applyWaitOp(unit: Unit, inv: Invocation, step: StepRecord, op: OpOf<"wait">): Promise<void> {
  const expiresAt = new Date(op.timeoutAt);
  const trigger = op.match ? await unit.tx.getEvent(inv.run.eventId) : null;
  await unit.saveStep({ ...step, status: "waiting", wakeAt: expiresAt });
  await unit.tx.insertMatchers([
    {
      runId: inv.run.id,
      stepId: step.id,
      kind: "wait",
      eventName: op.event,
      matchPath: op.match,
      matchValue: op.match ? (valueAtPath(trigger, op.match) ?? null) : undefined,
      ifExpr: op.if,
      expiresAt,
    },
  ]);
  await unit.enqueue([{ kind: "wait-timeout", runId: inv.run.id, stepId: step.id, runAt: expiresAt }]);
  const condition = op.match ? ` matching ${op.match}` : op.if ? ` where ${op.if}` : "";
  unit.info(
    `${runLabel(inv.run.id, inv.fn.id)} step "${step.name}" waiting for ${op.event}${condition} until ${expiresAt.toISOString()}`,
  );
}

/** Stores the events with IDs derived from run and step, so a repeated send stores nothing new. */
export async function applySendOp(unit: Unit, inv: Invocation, step: StepRecord, op: OpOf<"send">): Promise<void> {
  const events: EventRecord[] = op.events.map((event, index) => ({
    id: event.id ?? `${inv.run.id}:${step.id}:${index}`,
    name: event.name,
    data: event.data ?? {},
    ts: event.ts ?? Date.now(),
  }));
  await ingestInTransaction(unit, events);
  const ids = events.map((event) => event.id);
  await unit.saveStep({ ...step, status: "completed", output: { ids }, attempts: 1, endedAt: new Date() });
  unit.info(`${runLabel(inv.run.id, inv.fn.id)} step "${step.name}" sent ${events.map((e) => e.name).join(", ")}`);
}

export async function applyInvokeOp(unit: Unit, inv: Invocation, step: StepRecord, op: OpOf<"invoke">): Promise<void> {
  const label = `${runLabel(inv.run.id, inv.fn.id)} step "${step.name}"`;
  // jobs.ts refreshed the registry for every invoked function before this transaction.
  const target = unit.ctx.registry.cachedFunction(op.functionId);
  if (!target) {
    const error = serializedError(
      "FunctionNotFound",
      `step.invoke: no function "${op.functionId}" is registered; sync the app that defines it`,
    );
    await unit.saveStep({ ...step, status: "failed", error, attempts: 1, endedAt: new Date() });
    unit.warn(`${label} failed: ${error.message}`);
    return;
  }
  const event: EventRecord = {
    id: `${inv.run.id}:${step.id}:invoke`,
    name: FUNCTION_INVOKED_EVENT,
    data: op.data ?? {},
    ts: Date.now(),
  };
  await unit.tx.insertEvents([event]);
  await unit.saveStep({ ...step, status: "invoking", wakeAt: op.timeoutAt ? new Date(op.timeoutAt) : undefined });
  const child = await startRun(unit, target, event, { runId: inv.run.id, stepId: step.id });
  if (op.timeoutAt) {
    await unit.enqueue([{ kind: "invoke-timeout", runId: inv.run.id, stepId: step.id, runAt: new Date(op.timeoutAt) }]);
  }
  unit.info(`${label} invoked ${target.id} as run ${child.id}`);
}
