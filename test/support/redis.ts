/**
 * Real Redis for tests, reached the production way: @upstash/redis over REST, through the
 * project's Upstash-compatible bridge to 127.0.0.1:6379. Each caller gets its own key prefix
 * (or its own database index, for suites that flush), so suites never see each other's keys.
 *
 * Without CI=true an unreachable Redis skips the suites that need it, with a visible note;
 * with CI=true they run and fail.
 */
import { startUpstashBridge } from "@stepwise/dev-bridges";
import { reachable } from "./net.ts";

const HOST = "127.0.0.1";
const PORT = 6379;

/** Whether the Redis suites run: always under CI, else when the server answers. */
export const redisAvailable: boolean = process.env.CI === "true" || (await reachable(HOST, PORT));
if (!redisAvailable) console.warn(`Redis at ${HOST}:${PORT} unreachable: skipping Redis suites (CI=true makes this a failure)`);

export interface TestRedis {
  /** REST URL and token for @upstash/redis (the bridge). */
  url: string;
  token: string;
  /** A key prefix no other suite uses. */
  prefix: string;
  /** `redis://…` of the database this suite may flush. */
  redisUrl: string;
  close(): Promise<void>;
}

/**
 * Starts a bridge for this suite. `db` picks a Redis database index of its own (for suites
 * that FLUSHDB); the default 0 is shared, and isolated by the prefix.
 */
export async function startTestRedis(label = "t", db = 0): Promise<TestRedis> {
  const token = `test-token-${Math.random().toString(36).slice(2)}`;
  const redisUrl = `redis://${HOST}:${PORT}/${db}`;
  const bridge = await startUpstashBridge({ port: 0, token, redisUrl });
  return {
    url: bridge.url,
    token,
    prefix: `stepwise-test:${label}:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}:`,
    redisUrl,
    close: () => bridge.close(),
  };
}
