/**
 * The Redis side of the Upstash bridge: one shared ioredis connection for single commands and
 * `/pipeline`, and a dedicated connection for `/multi-exec`, so a transaction's MULTI..EXEC is
 * never split by other requests' commands and never leaves connection state behind on the
 * shared connection.
 *
 * Concurrent requests are pipelined on the shared connection anyway: ioredis writes each command
 * as soon as it is issued, without waiting for earlier replies. Its `enableAutoPipelining` stays
 * off because (ioredis 5.x) it drops the command name of `callBuffer(name, ...args)` calls.
 */
import { Redis, type RedisOptions } from "ioredis";
import { BridgeRequestError, type RedisArg, type RedisReply, type Settled } from "./upstash-encoding.ts";

/** Runs commands against Redis with Upstash's semantics. */
export interface RedisExecutor {
  /** One command; rejects with the Redis error (`name === "ReplyError"`) or a bridge error. */
  run(name: string, args: RedisArg[]): Promise<RedisReply>;
  /** Independent commands in order; each settles on its own, like Upstash's `/pipeline`. */
  pipeline(commands: Array<[string, RedisArg[]]>): Promise<Settled[]>;
  /** Commands in MULTI/EXEC; rejects with an EXECABORT ReplyError when Redis discards it. */
  transaction(commands: Array<[string, RedisArg[]]>): Promise<Settled[]>;
  close(): Promise<void>;
}

// Commands that would block the shared connection, change its state for every other request,
// or need a streaming response. Upstash refuses blocking and connection-state commands too.
const REFUSED = new Map<string, string>([
  ...["subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe", "monitor"].map(
    (c) => [c, "needs a streaming connection, which the bridge does not offer"] as const,
  ),
  ...["blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax", "bzmpop", "wait", "waitaof"].map(
    (c) => [c, "blocking commands would stall the shared connection"] as const,
  ),
  ...["select", "auth", "hello", "quit", "reset", "client", "sync", "psync"].map(
    (c) => [c, "it would change the shared connection for every request"] as const,
  ),
  ...["multi", "exec", "discard", "watch", "unwatch"].map(
    (c) => [c, "send the whole transaction to /multi-exec instead"] as const,
  ),
]);

/** Throws a BridgeRequestError when the bridge refuses to forward this command. */
export function assertAllowed(name: string, args: RedisArg[]): void {
  const lower = name.toLowerCase();
  let reason = REFUSED.get(lower);
  if (!reason && (lower === "xread" || lower === "xreadgroup")) {
    if (args.some((a) => String(a).toLowerCase() === "block")) reason = "blocking commands would stall the shared connection";
  }
  if (reason) throw new BridgeRequestError(`ERR Command is not available on the upstash bridge: '${lower}' (${reason})`);
}

/** True for an error reply from Redis (as opposed to a lost connection or a bridge fault). */
export function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === "ReplyError";
}

const settle = (p: Promise<unknown>): Promise<Settled> =>
  p.then(
    (value) => ({ ok: true, value: value as RedisReply }),
    (error: unknown) => ({ ok: false, error: error instanceof Error ? error : new Error(String(error)) }),
  );

function replyError(message: string): Error {
  const err = new Error(message);
  err.name = "ReplyError";
  return err;
}

// Commands go out with upper-cased names on purpose: ioredis keys its reply transformers on the
// lower-case name (e.g. HGETALL -> object), and the bridge must pass Redis's replies through raw.
const wireName = (name: string) => name.toUpperCase();

/** The Redis URL with its password masked, for log lines and error messages. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.password) return url;
    u.password = "***";
    return u.toString();
  } catch {
    return url;
  }
}

/** Connects both connections; rejects with a readable message when Redis is unreachable. */
export async function connectRedisExecutor(redisUrl: string): Promise<RedisExecutor> {
  const common: RedisOptions = {
    lazyConnect: true,
    // Never resend a command that may already have run (INCR twice is worse than an error);
    // commands not yet written still wait for a reconnect, a few attempts at most.
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 3,
    connectionName: "stepwise-upstash-bridge",
  };
  const shared = new Redis(redisUrl, common);
  const tx = new Redis(redisUrl, common);
  const connections = [shared, tx];
  const shown = redactRedisUrl(redisUrl);

  // ioredis emits an "error" for every failed reconnect attempt; say it once per outage.
  let reported = true; // nothing to say until the first successful connection
  let lastError: Error | undefined;
  for (const conn of connections) {
    conn.on("ready", () => (reported = false));
    conn.on("error", (err: Error) => {
      lastError = err;
      if (reported) return;
      reported = true;
      console.error(`upstash bridge: lost Redis at ${shown}: ${err.message} (retrying)`);
    });
  }

  try {
    await Promise.all(connections.map((c) => c.connect()));
  } catch (err) {
    for (const c of connections) c.disconnect();
    // connect() only says "Connection is closed."; the error event has the cause (ECONNREFUSED...).
    throw new Error(`upstash bridge: cannot reach Redis at ${shown}: ${(lastError ?? (err as Error)).message}`);
  }

  const run = (name: string, args: RedisArg[]): Promise<RedisReply> => {
    try {
      assertAllowed(name, args);
    } catch (err) {
      return Promise.reject(err);
    }
    return shared.callBuffer(wireName(name), ...args) as Promise<RedisReply>;
  };

  return {
    run,

    pipeline(commands) {
      // Issued synchronously one after another, so they reach Redis in order and in flight
      // together. Each one settles on its own, like Upstash's pipeline.
      return Promise.all(commands.map(([name, args]) => settle(run(name, args))));
    },

    async transaction(commands) {
      // Upstash discards the whole transaction when one command is unsupported.
      for (const [name, args] of commands) assertAllowed(name, args);
      const multi = tx.multi();
      for (const [name, args] of commands) multi.callBuffer(wireName(name), ...args);
      let results: [Error | null, unknown][] | null;
      try {
        results = await multi.exec();
      } catch (err) {
        const causes = (err as { previousErrors?: Error[] }).previousErrors ?? [];
        if (err instanceof Error && isReplyError(err) && causes.length > 0) {
          // Say which command made Redis discard the transaction, not only that it did.
          throw replyError(`${err.message.replace(/\.$/, "")}: ${causes.map((c) => c.message).join("; ")}`);
        }
        throw err;
      }
      // null only happens after a failed WATCH, which the bridge never sends; treat as aborted.
      if (!results) throw replyError("EXECABORT Transaction discarded");
      return results.map(([error, value]) => (error ? { ok: false, error } : { ok: true, value: value as RedisReply }));
    },

    async close() {
      await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}
