/**
 * `publish(topic, data)`, the SDK's side of live streams (see `@stepwise/protocol`'s live.ts):
 * progress goes to the executor (`POST /api/publish`, signed), which sends it on to the run's
 * stream. One request at a time per invocation, carrying everything published while the last
 * was on its way, so a model's tokens cost a request per round trip, not per token, and arrive
 * in order.
 *
 * Progress is not durable: a publish the executor does not take (down, too slow) is dropped with
 * a warning, never an error of the run. Published while the replay re-reads stored steps, it is
 * not sent at all: it was sent when that code ran for real. The invocation's answer waits for
 * what is on its way (up to a bound), so the last messages of a step arrive before its result.
 */
import { failureReason, findTextProblem, MAX_MESSAGE_BYTES, MAX_MESSAGES_PER_PUBLISH, PROTOCOL_VERSION, PUBLISH_ROUTE, TopicSchema, type PublishRequest } from "@stepwise/protocol";
import { answeredOk, postSigned, type ExecutorTransport } from "./api.ts";

/** Sends a message to the run's stream (`GET /api/runs/:id/stream`); see {@link FunctionContext.publish}. */
export type Publish = (topic: string, data: unknown) => Promise<void>;

/** How much may wait to be sent (JSON bytes); past it, new messages are dropped (with one warning). */
const MAX_WAITING_BYTES = 8 * 1024 * 1024;
/** How long one request may take. */
const PUBLISH_TIMEOUT_MS = 5_000;
/** How long an invocation's answer waits for messages still on their way. */
export const PUBLISH_DRAIN_MS = 2_000;

interface Waiting {
  topic: string;
  data: unknown;
  bytes: number;
  sent: () => void;
}

export class Publisher {
  private waiting: Waiting[] = [];
  private waitingBytes = 0;
  private sending: Promise<void> | undefined;
  private dropped = 0;

  constructor(
    private readonly transport: ExecutorTransport | undefined,
    private readonly run: { id: string; appId: string },
    /** Whether the code publishing runs for real now (not a replay of stored steps). */
    private readonly live: () => boolean,
  ) {}

  /**
   * The function's `publish`: a message the executor would refuse throws here, at the call (so
   * a publish that is not awaited still fails where it is written); a good one is queued, and
   * the promise resolves once the executor took it or it was dropped. It never rejects.
   */
  readonly publish: Publish = (topic, data) => {
    const topicOk = TopicSchema.safeParse(topic);
    if (!topicOk.success) throw new TypeError(`publish(${JSON.stringify(topic)?.slice(0, 80)}): ${topicOk.error.issues[0]?.message ?? "not a topic"}`);
    let text: string | undefined;
    try {
      text = JSON.stringify(data ?? null);
    } catch (error) {
      throw new TypeError(`publish("${topic}", …): data must be JSON (${(error as Error).message})`);
    }
    if (text === undefined) throw new TypeError(`publish("${topic}", …): data must be JSON, not ${typeof data}`);
    // What is checked is what is sent: the JSON, after any toJSON.
    const sent = JSON.parse(text) as unknown;
    const problem = findTextProblem(sent);
    if (problem) throw new TypeError(`publish("${topic}", …): data ${problem}`);
    const bytes = new TextEncoder().encode(text).length;
    if (bytes > MAX_MESSAGE_BYTES) throw new RangeError(`publish("${topic}", …): data is ${bytes} bytes as JSON, over the ${MAX_MESSAGE_BYTES} a message may hold`);
    if (!this.live() || !this.transport) return Promise.resolve();
    if (this.waitingBytes + bytes > MAX_WAITING_BYTES) {
      if (this.dropped++ === 0) this.warn(`more than ${MAX_WAITING_BYTES / 1024 / 1024} MB of messages wait to be sent; later ones are dropped`);
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.waitingBytes += bytes;
      this.waiting.push({ topic, data: sent, bytes, sent: resolve });
      this.sending ??= this.sendAll();
    });
  };

  /** Waits for messages on their way, at most `ms`; what is left then is dropped. */
  async drain(ms = PUBLISH_DRAIN_MS): Promise<void> {
    if (!this.sending) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.sending, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
    const left = this.waiting.splice(0);
    this.waitingBytes = 0;
    if (left.length > 0) this.warn(`${left.length} message(s) still waiting when the invocation answered after ${ms} ms; dropped`);
    for (const message of left) message.sent();
  }

  private async sendAll(): Promise<void> {
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0, MAX_MESSAGES_PER_PUBLISH);
      for (const message of batch) this.waitingBytes -= message.bytes;
      const body: PublishRequest = { version: PROTOCOL_VERSION, run: this.run, messages: batch.map(({ topic, data }) => ({ topic, data })) };
      try {
        const answer = await postSigned(this.transport!, PUBLISH_ROUTE, JSON.stringify(body), { timeoutMs: PUBLISH_TIMEOUT_MS, maxBytes: 64 * 1024 });
        // A 200 from something in front of the executor (a login page, a catch-all) took nothing.
        if (answer.status !== 200 || !answeredOk(answer.text)) this.warn(`the executor answered ${answer.status} (${(answer.text ?? "").slice(0, 200)}); ${batch.length} message(s) dropped`);
      } catch (error) {
        this.warn(`${failureReason(error)}; ${batch.length} message(s) dropped`);
      }
      for (const message of batch) message.sent();
    }
    this.sending = undefined;
  }

  private warn(what: string): void {
    this.transport?.notices.warn("publish", `Stepwise: run ${this.run.id}: publish to ${this.transport.baseUrl}${PUBLISH_ROUTE}: ${what}`);
  }
}

