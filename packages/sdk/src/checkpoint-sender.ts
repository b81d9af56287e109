/**
 * Checkpoints on their way from this process to one executor. A checkpoint goes at once while
 * fewer than {@link LANES} requests are on the way; the ones that come while both are busy wait
 * and go together in one request (a batch, when the executor's offer says it takes them) as soon
 * as one lane is free, or after {@link MAX_WAIT_MS} on a lane of their own, so a slow checkpoint
 * holds up no other for longer than that. A chain of steps alone never waits; a Node server with
 * many invocations at once sends one request per round trip instead of one per step, as the
 * executor commits the checkpoints that wait in one statement. Each checkpoint of a batch is
 * committed or refused on its own, exactly as if it had gone alone.
 *
 * Only where one process serves its requests with shared I/O (Node, Bun, Deno): a Cloudflare
 * Worker cancels a request that waits on I/O another request started, so there each checkpoint
 * goes alone, at once.
 *
 * A batch refused whole (400 or 413: nothing of it was written) goes again one checkpoint a
 * request, and for {@link SINGLES_AFTER_REFUSAL_MS} every checkpoint goes alone and at once, as to an
 * executor that does not offer batches: in a rolling deploy, an executor that predates batches
 * may answer behind the same URL as one that offers them.
 */
import { CHECKPOINT_ROUTE, MAX_CHECKPOINT_BATCH, PROTOCOL_VERSION, type CheckpointBatch, type CheckpointOutcome, type CheckpointRequest } from "@stepwise/protocol";
import { postSigned, type ExecutorAnswer, type ExecutorTransport } from "./api.ts";

/** Requests on the way at once; more checkpoints wait for a lane and go together. */
export const LANES = 2;
let lanes = LANES;

/**
 * Sets the lanes of every sender in the process. For the fault simulation, whose few
 * invocations at once rarely fill two lanes: with one, any two checkpoints at once make a batch.
 */
export function setCheckpointLanes(count: number): void {
  lanes = count;
}

/** Longest a checkpoint waits for a lane: then it goes on one of its own, with any others waiting. */
export const MAX_WAIT_MS = 20;
/** How long checkpoints go alone after an executor refused a batch whole. */
export const SINGLES_AFTER_REFUSAL_MS = 60_000;
let singlesAfterRefusalMs = SINGLES_AFTER_REFUSAL_MS;

/** Sets how long checkpoints go alone after a refused batch, for every sender. For the fault simulation, whose schedules last seconds. */
export function setSinglesAfterRefusal(ms: number): void {
  singlesAfterRefusalMs = ms;
}
/** Bytes (UTF-8) of checkpoints one batch carries at most; a larger checkpoint goes alone. */
export const MAX_BATCH_BYTES = 1024 * 1024;
/** How long a checkpoint may take, waiting included, before the SDK gives up on it and answers instead. */
export const CHECKPOINT_TIMEOUT_MS = 10_000;
/** Longest checkpoint answer read back: a few bytes for one, an outcome (its error naming the step) per checkpoint of a batch. */
const MAX_ANSWER_BYTES = 64 * 1024;
const MAX_BATCH_ANSWER_BYTES = 1024 * 1024;

/** Whether requests of this process may wait on I/O another request started (not in a Cloudflare Worker). */
const sharedIo = () => (globalThis as { navigator?: { userAgent?: string } }).navigator?.userAgent !== "Cloudflare-Workers";

const utf8Bytes = (text: string) => (typeof Buffer !== "undefined" ? Buffer.byteLength(text) : new TextEncoder().encode(text).length);

/** What one checkpoint was answered, as its own request would have been; a failure on the way is thrown. */
export type Delivery = ExecutorAnswer;

interface Waiting {
  checkpoint: CheckpointRequest;
  text: string;
  bytes: number;
  since: number;
  resolve: (delivery: Delivery) => void;
  reject: (error: unknown) => void;
}

/** Senders by the fetch they go through, then by executor and key: a transport is made per invocation. */
const senders = new WeakMap<typeof fetch, Map<string, CheckpointSender>>();

/** The sender of `transport`'s checkpoints: one per executor, key and way of sending in the process. */
export function senderFor(transport: ExecutorTransport): CheckpointSender {
  let byExecutor = senders.get(transport.fetch);
  if (!byExecutor) senders.set(transport.fetch, (byExecutor = new Map()));
  const key = `${transport.post ? "node" : "fetch"} ${transport.baseUrl} ${transport.signingKey}`;
  let sender = byExecutor.get(key);
  if (!sender) byExecutor.set(key, (sender = new CheckpointSender(transport)));
  return sender;
}

export class CheckpointSender {
  private onTheWay = 0;
  private readonly waiting: Waiting[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The waiting checkpoint the timer is set for: the oldest when it was set. */
  private timedFor: Waiting | undefined;
  /** Until then every checkpoint goes alone and at once: an executor refused a batch whole. */
  private singlesUntil = 0;

  constructor(private readonly transport: ExecutorTransport) {}

  /**
   * Sends `checkpoint`. `batches`: the executor's offer says it takes batches; without it the
   * checkpoint goes alone and at once, as to an executor that predates them.
   */
  send(checkpoint: CheckpointRequest, batches: boolean): Promise<Delivery> {
    const text = JSON.stringify(checkpoint);
    if (!batches || !sharedIo() || Date.now() < this.singlesUntil) return this.post(text, CHECKPOINT_TIMEOUT_MS, MAX_ANSWER_BYTES);
    return new Promise<Delivery>((resolve, reject) => {
      this.waiting.push({ checkpoint, text, bytes: utf8Bytes(text), since: Date.now(), resolve, reject });
      this.next();
    });
  }

  /** Starts a request with what waits while a lane is free (or, `overdue`, one more lane); then waits for the oldest left. */
  private next(overdue = false): void {
    while (this.waiting.length > 0 && (this.onTheWay < lanes || overdue)) {
      overdue = false;
      const taken = this.take();
      if (taken.length === 0) continue;
      this.onTheWay++;
      void this.deliver(taken).finally(() => {
        this.onTheWay--;
        this.next();
      });
    }
    // Set again only when the oldest changed: most calls come with the same one still waiting.
    const oldest = this.waiting[0];
    if (oldest === this.timedFor) return;
    clearTimeout(this.timer);
    this.timedFor = oldest;
    this.timer = oldest && setTimeout(() => ((this.timedFor = undefined), this.next(true)), Math.max(0, oldest.since + MAX_WAIT_MS - Date.now()));
  }

  /** The oldest waiting checkpoints of one app that fit one request; those that waited their whole timeout fail. */
  private take(): Waiting[] {
    const now = Date.now();
    const taken: Waiting[] = [];
    let bytes = 0;
    for (let i = 0; i < this.waiting.length && taken.length < MAX_CHECKPOINT_BATCH; ) {
      const one = this.waiting[i]!;
      if (now - one.since >= CHECKPOINT_TIMEOUT_MS) {
        this.waiting.splice(i, 1);
        one.reject(new Error(`no answer within ${CHECKPOINT_TIMEOUT_MS} ms (it waited for the checkpoints before it)`));
        continue;
      }
      const fits = taken.length === 0 || (one.checkpoint.run.appId === taken[0]!.checkpoint.run.appId && bytes + one.bytes <= MAX_BATCH_BYTES);
      if (!fits) {
        i++;
        continue;
      }
      this.waiting.splice(i, 1);
      taken.push(one);
      bytes += one.bytes;
    }
    return taken;
  }

  private async deliver(taken: Waiting[]): Promise<void> {
    // The timeout counts from the oldest checkpoint's send: waiting included.
    const timeoutMs = CHECKPOINT_TIMEOUT_MS - (Date.now() - taken[0]!.since);
    try {
      if (taken.length === 1) return taken[0]!.resolve(await this.post(taken[0]!.text, timeoutMs, MAX_ANSWER_BYTES));
      const answer = await this.post(batchText(taken), timeoutMs, MAX_BATCH_ANSWER_BYTES);
      if (answer.status === 400 || answer.status === 413) return this.refusedWhole(taken, answer);
      const outcomes = answer.status === 200 ? outcomesOf(answer.text, taken.length) : undefined;
      // Not the executor's answer to a batch (a 5xx page, a proxy's 200, one cut off): each checkpoint fails with it.
      if (!outcomes) {
        const failed = answer.status === 200 ? { status: 200, text: `not an answer to a batch of ${taken.length}: ${(answer.text ?? "").slice(0, 200)}` } : answer;
        return taken.forEach((one) => one.resolve(failed));
      }
      taken.forEach((one, i) => one.resolve(deliveryOf(outcomes[i]!)));
    } catch (error) {
      taken.forEach((one) => one.reject(error));
    }
  }

  /**
   * A batch refused before anything of it was written (an executor that predates batches reads
   * no checkpoint in it; a batch over an executor's body limit is not read): its checkpoints, and
   * those waiting, go again each alone and at once, within what is left of their timeouts; so
   * does every checkpoint for a while after.
   */
  private refusedWhole(taken: Waiting[], answer: Delivery): void {
    const now = Date.now();
    if (now >= this.singlesUntil) {
      // One line, whatever the answer was (an HTML error page has line breaks).
      const why = `${answer.status}: ${(answer.text ?? "").slice(0, 200).replace(/\s+/g, " ").trim()}`;
      this.transport.notices.warn(
        "checkpoint batch",
        `Stepwise: the executor at ${this.transport.baseUrl} refused a batch of ${taken.length} checkpoints whole (${why}); ` +
          `each goes alone for ${singlesAfterRefusalMs / 1000} s. An executor older than checkpoint batches answers 400 to one (a rolling deploy); a 413 is its body limit`,
      );
    }
    this.singlesUntil = now + singlesAfterRefusalMs;
    for (const one of [...taken, ...this.waiting.splice(0)]) {
      const left = CHECKPOINT_TIMEOUT_MS - (now - one.since);
      if (left <= 0) one.reject(new Error(`no answer within ${CHECKPOINT_TIMEOUT_MS} ms (its batch was refused)`));
      else this.post(one.text, left, MAX_ANSWER_BYTES).then(one.resolve, one.reject);
    }
  }

  /**
   * Bounded here too, not only by the transport: a lane held for good (a fetch of the user's
   * that ignores its signal) would hold every checkpoint of the process behind it.
   */
  private post(body: string, timeoutMs: number, maxBytes: number): Promise<Delivery> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${CHECKPOINT_TIMEOUT_MS} ms`)), Math.max(0, timeoutMs));
    });
    return Promise.race([postSigned(this.transport, CHECKPOINT_ROUTE, body, { timeoutMs: Math.max(1, timeoutMs), maxBytes }), late]).finally(() => clearTimeout(timer));
  }
}

/** The batch's body, written from the checkpoints' own JSON. */
function batchText(taken: Waiting[]): string {
  const head: Omit<CheckpointBatch, "checkpoints"> = { version: PROTOCOL_VERSION, appId: taken[0]!.checkpoint.run.appId };
  return `${JSON.stringify(head).slice(0, -1)},"checkpoints":[${taken.map((one) => one.text).join(",")}]}`;
}

/** The outcomes of an answer to a batch of `count`, or undefined when it is not one. */
function outcomesOf(text: string | null, count: number): CheckpointOutcome[] | undefined {
  try {
    const answer = JSON.parse(text ?? "") as { ok?: unknown; outcomes?: unknown } | null;
    if (answer?.ok !== true || !Array.isArray(answer.outcomes) || answer.outcomes.length !== count) return undefined;
    return answer.outcomes.every((o) => typeof (o as { status?: unknown } | null)?.status === "number") ? (answer.outcomes as CheckpointOutcome[]) : undefined;
  } catch {
    return undefined;
  }
}

/** A batch's outcome as the answer its checkpoint's own request would have had. */
function deliveryOf(outcome: CheckpointOutcome): Delivery {
  if (outcome.status === 200) return { status: 200, text: '{"ok":true}' };
  const { status, ...body } = outcome;
  return { status, text: JSON.stringify(body) };
}
