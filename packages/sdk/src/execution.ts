/**
 * One invocation: replay the handler from the top, let it run until it returns, throws or
 * stops making progress, then answer the executor (see protocol `InvokeResponse`):
 *
 *   non-determinism            → 500 error, not retriable
 *   `targetStep` set           → 206 with that step's result (or 500 if it was not reached)
 *   handler returned           → 200 completed
 *   handler threw              → 500 error (retriable unless NonRetriableError / failed step)
 *   one new step, a `run`      → run it now; with a checkpointer, commit its result and go on
 *                                (while the budget lasts), else 206 with its result
 *   otherwise                  → 206 with an op per new step (none: everything is pending)
 */
import type { InvokeRequest, InvokeResponse, SerializedError } from "@stepwise/protocol";
import type { ExecutorTransport } from "./api.ts";
import type { Checkpointer } from "./checkpointing.ts";
import type { EnvSource } from "./env.ts";
import { failureVerdict } from "./errors.ts";
import type { FunctionContext, HandlerEvent, RunnableFunction } from "./function.ts";
import { toJson } from "./jsonify.ts";
import { RunLogger } from "./logger.ts";
import type { Context as TraceContext } from "@opentelemetry/api";
import { newStepOp, runStep } from "./ops.ts";
import { Publisher, PUBLISH_DRAIN_MS } from "./publisher.ts";
import { Replay, type FoundStep, type NewStep } from "./replay.ts";
import { createStepTools } from "./step-tools.ts";
import type { EventSchemas } from "./types.ts";

/** The answer to one invocation: HTTP status and body. */
export interface InvokeResult {
  status: 200 | 206 | 500;
  body: InvokeResponse;
}

type Outcome = { state: "running" } | { state: "returned"; value: unknown } | { state: "threw"; error: unknown };

interface HandlerRun {
  outcome: Outcome;
  /** Settles (never rejects) when the handler returns or throws. */
  done: Promise<void>;
}

/** Runs one invocation of `fn` for `request`; with a checkpointer, several steps of it. */
/** What an invocation may use beyond its request. */
export interface ExecutionContext {
  /** Commits step results mid-invocation; absent: checkpointing is off or not offered. */
  checkpointer?: Checkpointer;
  trace?: TraceContext;
  /** How the function's messages reach the executor (`publish`); absent: they are not sent. */
  transport?: ExecutorTransport;
  /** When the host cuts the request off (ms since the epoch), if it says. */
  hostDeadline?: number;
  /** A Worker's bindings, read over `process.env` (`step.ai.infer`'s keys). */
  env?: EnvSource;
}

export async function execute(fn: RunnableFunction, request: InvokeRequest, { checkpointer, trace, transport, hostDeadline, env }: ExecutionContext = {}): Promise<InvokeResult> {
  const replay = new Replay(request.steps, request.targetStep);
  const logger = new RunLogger(fn.log, request.run.id);
  const publisher = new Publisher(transport, { id: request.run.id, appId: request.run.appId }, () => replay.live);
  const context: FunctionContext<EventSchemas, string> = {
    event: request.event as HandlerEvent<EventSchemas, string>,
    events: request.events as HandlerEvent<EventSchemas, string>[],
    step: createStepTools(replay.dispatch, fn.schemas, env),
    runId: request.run.id,
    attempt: request.run.attempt,
    logger,
    publish: publisher.publish,
  };
  const run = startHandler(fn, context);
  try {
    for (;;) {
      await settle(replay, run);
      const step = checkpointer && checkpointable(replay, run.outcome);
      if (!step) return await decide(replay, run.outcome, request, logger, trace);
      const started = Date.now();
      const callsBefore = replay.calls;
      const op = await runFresh(replay, step, request, logger, trace);
      // Going on is only safe if the function did nothing else while the step ran: a step call
      // from elsewhere in the body (refused as nested while a step runs) or the handler settling
      // (a race decided by a timer) would make this invocation differ from a replay. Then, as
      // when a failed attempt is the executor's to schedule or the budget is spent, the answer
      // carries the result.
      const undisturbed = replay.calls === callsBefore && run.outcome.state === "running";
      if (op.op !== "step-ran" || !undisturbed || Date.now() >= checkpointer.deadline || !(await checkpointer.commit(op, Date.now() - started))) {
        return { status: 206, body: { type: "ops", ops: [op] } };
      }
      replay.resolveFresh(step, op.output);
    }
  } finally {
    replay.close();
    logger.close();
    // What the code published goes out before the answer (bounded, and well inside the host's
    // limit: the answer carries step results, progress does not): a reader sees a step's
    // messages before its result.
    await publisher.drain(hostDeadline === undefined ? PUBLISH_DRAIN_MS : Math.min(PUBLISH_DRAIN_MS, Math.max(0, Math.floor((hostDeadline - Date.now()) / 4))));
  }
}

function startHandler(fn: RunnableFunction, context: FunctionContext<EventSchemas, string>): HandlerRun {
  const run: HandlerRun = { outcome: { state: "running" }, done: Promise.resolve() };
  // The async wrapper turns a synchronous throw into a rejection like any other.
  run.done = (async () => fn.handler(context))().then(
    (value) => void (run.outcome = { state: "returned", value }),
    (error: unknown) => void (run.outcome = { state: "threw", error }),
  );
  return run;
}

/**
 * Waits until the handler has finished, or is blocked on steps and made no step call during a
 * whole macrotask (stored results resolve as microtasks, so a replay of any length settles in
 * a few ticks). While no step call is blocked, the handler is awaiting something else
 * (a fetch outside a step): wait for it rather than give up early.
 */
async function settle(replay: Replay, run: HandlerRun): Promise<void> {
  while (run.outcome.state === "running") {
    if (replay.blocked === 0) {
      await Promise.race([run.done, replay.nextBlocked()]);
      continue;
    }
    const calls = replay.calls;
    await nextMacrotask();
    if (replay.calls === calls) return;
  }
}

/**
 * Resolves after every pending microtask has run. `setImmediate` where the runtime has it
 * (Node, Bun): `setTimeout(0)` is clamped to 1 ms or more, which would add that much to every
 * invocation. Elsewhere (Workers, Deno, browsers) a zero timeout is the portable macrotask.
 */
const nextMacrotask: () => Promise<void> = (() => {
  const immediate = (globalThis as { setImmediate?: (fn: () => void) => unknown }).setImmediate;
  return immediate
    ? () => new Promise<void>((resolve) => void immediate(resolve))
    : () => new Promise<void>((resolve) => void setTimeout(resolve, 0));
})();

async function decide(replay: Replay, outcome: Outcome, request: InvokeRequest, logger: RunLogger, trace?: TraceContext): Promise<InvokeResult> {
  if (replay.nonDeterminism) return failure({ name: "NonDeterminismError", message: replay.nonDeterminism });
  if (request.targetStep !== undefined) return runTarget(replay, request, logger, trace);
  if (outcome.state === "returned") {
    logger.flush();
    try {
      return { status: 200, body: { type: "completed", output: toJson(outcome.value, "The function's return value") } };
    } catch (error) {
      return { status: 500, body: { type: "error", ...failureVerdict(error) } };
    }
  }
  if (outcome.state === "threw") {
    logger.flush();
    return { status: 500, body: { type: "error", ...failureVerdict(outcome.error) } };
  }
  const [only, ...others] = replay.fresh;
  if (only && others.length === 0 && only.kind === "run") {
    return runNow(replay, only, request, logger, trace);
  }
  return { status: 206, body: { type: "ops", ops: replay.fresh.map(newStepOp) } };
}

async function runTarget(replay: Replay, request: InvokeRequest, logger: RunLogger, trace?: TraceContext): Promise<InvokeResult> {
  const target = replay.target;
  const targetStep = request.targetStep;
  if (!target) {
    return failure({
      name: "StepNotFound",
      message: `The executor asked to run step "${targetStep}", but the function did not reach it in this replay`,
    });
  }
  if (target.kind !== "run") {
    return failure({
      name: "StepNotFound",
      message: `The executor asked to run step "${targetStep}", but it is a ${target.kind} step, not step.run()`,
    });
  }
  return runNow(replay, target, request, logger, trace);
}

/** The one new step, when it is a `step.run` the function is blocked on and nothing else is new. */
function checkpointable(replay: Replay, outcome: Outcome): NewStep | undefined {
  if (replay.nonDeterminism || outcome.state !== "running" || replay.fresh.length !== 1) return undefined;
  const [only] = replay.fresh;
  return only?.kind === "run" ? only : undefined;
}

async function runFresh(replay: Replay, step: FoundStep, request: InvokeRequest, logger: RunLogger, trace?: TraceContext) {
  replay.startExecuting(step.id);
  // The request's attempt is the target step's; a step reached fresh is on its first.
  const attempt = step.id === request.targetStep ? request.run.attempt : 0;
  try {
    return await runStep(step, { id: request.run.id, attempt }, logger, trace);
  } finally {
    replay.stopExecuting();
  }
}

async function runNow(replay: Replay, step: FoundStep, request: InvokeRequest, logger: RunLogger, trace?: TraceContext): Promise<InvokeResult> {
  return { status: 206, body: { type: "ops", ops: [await runFresh(replay, step, request, logger, trace)] } };
}

function failure(error: SerializedError): InvokeResult {
  return { status: 500, body: { type: "error", error, retriable: false } };
}
