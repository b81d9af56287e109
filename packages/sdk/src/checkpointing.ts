/**
 * Checkpointing, the SDK's side: when an invocation reaches a `step.run` it can run now, the
 * step runs, its result is committed by the executor (`POST /api/checkpoints`, signed, carrying
 * the invocation's lease token) and the function goes on in the same invocation, until it
 * reaches something that must wait or its time budget (`maxRuntime`) is spent. Checkpoints of
 * many invocations at once go together (checkpoint-sender.ts). A checkpoint the
 * executor refuses or that fails on the way ends the invocation: its result goes back in the
 * answer, as it would with checkpointing off, and the executor's usual rules decide.
 */
import { CHECKPOINT_ROUTE, failureReason, PROTOCOL_VERSION, toMs, type CheckpointRequest, type Duration, type InvokeRequest, type Op } from "@stepwise/protocol";
import { answeredOk, type ExecutorTransport } from "./api.ts";
import { senderFor } from "./checkpoint-sender.ts";

/** Options of checkpointing (`checkpointing: { maxRuntime: "20s" }` on the client or a function). */
export interface CheckpointingOptions {
  /**
   * How long one invocation goes on running steps (default 5 s). Set it below your platform's
   * request limit minus your longest step: a step starts only while the budget lasts.
   */
  maxRuntime?: Duration;
}

/** On (the default), off, or on with options. */
export type CheckpointingSetting = boolean | CheckpointingOptions;

/**
 * The default budget: under the 10 s request limit of the strictest common hosts with room for
 * one more step of 5 s. A shorter budget costs one more invocation per budget, a few ms.
 */
export const DEFAULT_MAX_RUNTIME_MS = 5_000;

/** The budget in ms, or null when checkpointing is off. The function's setting wins over the client's. */
export function resolveCheckpointing(fnSetting: CheckpointingSetting | undefined, clientSetting: CheckpointingSetting | undefined): number | null {
  const setting = fnSetting ?? clientSetting ?? true;
  if (setting === false) return null;
  const maxRuntime = setting === true ? undefined : setting.maxRuntime;
  if (maxRuntime === undefined) return DEFAULT_MAX_RUNTIME_MS;
  const ms = toMs(maxRuntime);
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`checkpointing.maxRuntime must be a duration of 0 or more, got ${String(maxRuntime)}`);
  return ms;
}

/**
 * The budget of one invocation: the function's, cut to half the time its host leaves the
 * request when the host says (see `IncomingCall.deadline`). Null: checkpointing is off.
 */
export function budgetWithin(budgetMs: number | null, deadline: number | undefined, now = Date.now()): number | null {
  if (budgetMs === null || deadline === undefined) return budgetMs;
  return Math.min(budgetMs, Math.max(0, Math.floor((deadline - now) / 2)));
}

/** Commits step results for one invocation. */
export interface Checkpointer {
  /** Steps start only before this time (ms since the epoch). */
  readonly deadline: number;
  /** True once the result is durable; false when refused or failed (the caller answers with the op). Never throws. */
  commit(op: Extract<Op, { op: "step-ran" }>, durationMs: number): Promise<boolean>;
}

/** A checkpointer for `request`, or undefined when the executor offered none. */
export function checkpointerFor(request: InvokeRequest, budgetMs: number | null, transport: ExecutorTransport): Checkpointer | undefined {
  const offer = request.checkpoint;
  if (!offer || budgetMs === null || budgetMs <= 0 || request.targetStep !== undefined) return undefined;
  const url = `${transport.baseUrl}${CHECKPOINT_ROUTE}`;
  const sender = senderFor(transport);
  const runLabel = `run ${request.run.id}`;
  return {
    deadline: Date.now() + budgetMs,
    async commit(op, durationMs) {
      const checkpoint: CheckpointRequest = {
        version: PROTOCOL_VERSION,
        run: { id: request.run.id, appId: request.run.appId, functionId: request.run.functionId },
        token: offer.token,
        step: { id: op.id, name: op.name, position: op.position, output: op.output, durationMs: Math.max(0, Math.round(durationMs)), ...(op.usage && { usage: op.usage }) },
      };
      try {
        const response = await sender.send(checkpoint, offer.batches === true);
        const text = response.text ?? "an answer too long to read";
        // A 200 from something in front of the executor (a login page, a catch-all) is no commit.
        if (response.status === 200 && answeredOk(text)) return true;
        // 409 is the executor saying this invocation must stop; anything else is a fault on the way.
        if (response.status !== 409) transport.notices.warn("checkpoint", `Stepwise: ${runLabel} step "${op.name}": checkpoint answered ${response.status} (${text.slice(0, 200)}); its result goes in the invocation's answer`);
        return false;
      } catch (error) {
        transport.notices.warn("checkpoint", `Stepwise: ${runLabel} step "${op.name}": checkpoint to ${url} failed (${failureReason(error)}); its result goes in the invocation's answer`);
        return false;
      }
    },
  };
}

