/**
 * Live messages, the executor's side (see `@stepwise/protocol`'s live.ts): a run's published
 * progress is stored briefly (`Store.appendRunMessages`) so that any executor serving the run's
 * stream reads it, and a reader that reconnects resumes. Streams served by this process hear of
 * a publish it took at once ({@link MessageBell}); streams on other executors see it at their
 * next look at the record.
 */
import {
  findTextProblem,
  issuesText,
  MAX_MESSAGE_BYTES,
  PublishRequestSchema,
  readStreamToken,
  type RunMessage,
  type StreamClaims,
} from "@stepwise/protocol";
import type { EngineContext } from "./context.ts";
import { InputError } from "./errors.ts";
import { formatBytes } from "./limits.ts";

/** The most messages one read of a stream returns; a reader behind by more reads again at once. */
export const MESSAGES_PER_READ = 500;

/** Rings for a run's streams in this process when a publish of it commits. */
export class MessageBell {
  private readonly listeners = new Map<string, Set<() => void>>();

  /** Calls `listener` after each publish of `runId` this process takes; returns the unsubscribe. */
  listen(runId: string, listener: () => void): () => void {
    let set = this.listeners.get(runId);
    if (!set) this.listeners.set(runId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(runId) === set) this.listeners.delete(runId);
    };
  }

  ring(runId: string): void {
    for (const listener of this.listeners.get(runId) ?? []) listener();
  }
}

/**
 * Which app each run belongs to, remembered: a run's app never changes, and a run streaming a
 * model's tokens publishes every round trip, each of which would otherwise read the run first.
 */
export class RunOwners {
  private readonly known = new Map<string, string>();

  constructor(private readonly max = 10_000) {}

  /** The app of `runId`, or undefined for a run the store does not have. */
  async appOf(ctx: EngineContext, runId: string): Promise<string | undefined> {
    const cached = this.known.get(runId);
    if (cached !== undefined) return cached;
    const record = await ctx.store.getRun(runId);
    const appId = record ? (await ctx.registry.getFunction(record.functionId))?.appId : undefined;
    if (appId === undefined) return undefined;
    // The oldest goes first (a Map keeps insertion order).
    if (this.known.size >= this.max) this.known.delete(this.known.keys().next().value!);
    this.known.set(runId, appId);
    return appId;
  }
}

/**
 * Stores the messages of `POST /api/publish` (signed by the caller for `appId`); returns the
 * number of the last. Throws {@link InputError}: 400 for a malformed request, 413 for a message
 * over {@link MAX_MESSAGE_BYTES}, 404 for a run this app does not have. Stores nothing then.
 */
export async function publishMessages(ctx: EngineContext, owners: RunOwners, body: unknown, appId: string): Promise<{ runId: string; seq: number }> {
  const parsed = PublishRequestSchema.safeParse(body);
  if (!parsed.success) throw new InputError(`Not a Stepwise publish: ${issuesText(parsed.error.issues, "body")}`);
  const { run, messages } = parsed.data;
  if (run.appId !== appId) throw new InputError(`Publish rejected: it is for app "${run.appId}" but signed for app "${appId}"`);
  const stored = messages.map(({ topic, data }, index) => {
    const text = JSON.stringify(data ?? null);
    const problem = findTextProblem(data);
    if (problem) throw new InputError(`Publish rejected: message ${index} (topic "${topic}"): data ${problem}`);
    const bytes = new TextEncoder().encode(text).length;
    if (bytes > MAX_MESSAGE_BYTES) {
      throw new InputError(`Publish rejected: message ${index} (topic "${topic}") is ${formatBytes(bytes)}, over the ${formatBytes(MAX_MESSAGE_BYTES)} a message may hold; publish less, or store it in a step`, 413);
    }
    return { topic, data: text };
  });
  // Only the run's own app publishes to it: another app's run is as good as absent.
  if ((await owners.appOf(ctx, run.id)) !== appId) throw new InputError(`No run ${run.id} of app "${appId}" to publish to`, 404);
  const seq = await ctx.store.appendRunMessages(run.id, stored);
  return { runId: run.id, seq };
}

/** A run's messages after `afterSeq`, as a stream sends them. */
export async function readMessages(ctx: EngineContext, runId: string, afterSeq: number): Promise<RunMessage[]> {
  const rows = await ctx.store.readRunMessages(runId, afterSeq, MESSAGES_PER_READ);
  return rows.map((row) => ({ seq: row.seq, topic: row.topic, data: JSON.parse(row.data) as unknown, publishedAt: row.publishedAt.toISOString() }));
}

/**
 * Whether `token` lets its holder read `runId`'s stream now: signed with a key of the run's app
 * (`keysOf`: during a rotation, the next one too), for this run, not expired. A token for
 * another run, or signed by another app, does not.
 */
export async function streamTokenAllows(ctx: EngineContext, owners: RunOwners, keysOf: (appId: string) => readonly string[], token: string, runId: string): Promise<boolean> {
  const claims: StreamClaims | null = await readStreamToken(token, keysOf);
  if (!claims || claims.runId !== runId || claims.expiresAt <= ctx.clock.now()) return false;
  return (await owners.appOf(ctx, runId)) === claims.appId;
}
