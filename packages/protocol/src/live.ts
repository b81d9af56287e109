/**
 * Live streams: progress a run reports while it works (a model's tokens as they arrive, "3 of 10
 * pages read"), for a page or a script to show. A handler's `publish(topic, data)` sends it to
 * the executor (`POST /api/publish`, signed by the app); `GET /api/runs/:id/stream` sends it on
 * as server-sent events, beside the run's own transitions.
 *
 * Messages are not part of the run: they are not replayed, not retried, and kept only a while
 * (the last {@link MAX_KEPT_MESSAGES} of a run, for {@link MESSAGE_RETENTION_MS}) so a reader that
 * reconnects resumes where it was. The run's result is what a step returns, never a message.
 *
 * A browser reads a stream with a stream token (`?token=`): the app's server mints it for one run
 * with the app's signing key (`stepwise.streamToken(runId)`), so a page can follow its own run
 * without holding any key of the executor.
 */
import { z } from "zod";
import { PROTOCOL_VERSION } from "./wire.ts";
import { storableText } from "./text.ts";
import { mintSignedToken, readSignedToken } from "./tokens.ts";

/** The executor's route for published messages, signed by the app. */
export const PUBLISH_ROUTE = "/api/publish";
/** The longest topic name. */
export const MAX_TOPIC_LENGTH = 128;
/** The largest message (its data as JSON). */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** The most messages one request carries; the SDK sends more in several. */
export const MAX_MESSAGES_PER_PUBLISH = 200;
/** How many of a run's latest messages the executor keeps for readers that reconnect. */
export const MAX_KEPT_MESSAGES = 1_000;
/** How long a message is kept. */
export const MESSAGE_RETENTION_MS = 3_600_000;
/** Longest a stream token lives. */
export const MAX_STREAM_TOKEN_MS = 7 * 24 * 3_600_000;

/** A topic: what a reader picks messages by, e.g. `tokens` or `progress/pages`. */
export const TopicSchema = storableText("topic", ', e.g. "progress"')
  .min(1, 'topic must not be empty, e.g. "progress"')
  .max(MAX_TOPIC_LENGTH, `topic must be at most ${MAX_TOPIC_LENGTH} characters`);

/** The body of `POST /api/publish`: messages of one run, in the order published. */
export const PublishRequestSchema = z.object({
  version: z.literal(PROTOCOL_VERSION),
  run: z.object({ id: z.string().min(1), appId: z.string().min(1) }),
  messages: z
    .array(z.object({ topic: TopicSchema, data: z.unknown() }))
    .min(1)
    .max(MAX_MESSAGES_PER_PUBLISH),
});
export type PublishRequest = z.infer<typeof PublishRequestSchema>;

/** One message as a stream carries it (`event: message`; the SSE `id` is `seq`). */
export interface RunMessage {
  /** Counts the run's messages from 1: a reader resumes after the last it saw. */
  seq: number;
  topic: string;
  data: unknown;
  /** ISO time the executor stored it. */
  publishedAt: string;
}

/** Where a run's stream is read: `GET /api/runs/:runId/stream`. */
export const runStreamPath = (runId: string) => `/api/runs/${encodeURIComponent(runId)}/stream`;

/** What a stream token allows: reading one run's stream until it expires. */
export interface StreamClaims {
  appId: string;
  runId: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
}

const STREAM_PURPOSE = "stepwise-stream";

/** A token that lets whoever holds it read one run's stream (see `tokens.ts`). */
export function mintStreamToken(signingKey: string, claims: StreamClaims): Promise<string> {
  return mintSignedToken(STREAM_PURPOSE, signingKey, { a: claims.appId, r: claims.runId, e: claims.expiresAt });
}

/** The claims of a stream token signed by one of its app's keys, or null. Expiry is the caller's to judge. */
export async function readStreamToken(token: string, keysOf: (appId: string) => readonly string[]): Promise<StreamClaims | null> {
  const claims = await readSignedToken(STREAM_PURPOSE, token, ({ a }) => (typeof a === "string" ? keysOf(a) : []));
  const { a, r, e } = claims ?? {};
  if (typeof a !== "string" || typeof r !== "string" || typeof e !== "number") return null;
  return { appId: a, runId: r, expiresAt: e };
}
