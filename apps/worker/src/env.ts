/**
 * The Worker's bindings (see the top-level wrangler.toml, which documents each one) and the
 * executor built from them. Workers forbid using an I/O object (a WebSocket, a pooled Postgres
 * connection) in a request other than the one that opened it, so every request, alarm and cron
 * run opens its own store and closes it when done; only plain data outlives one.
 */
import { Executor, consoleLogger, parseAppSigningKeys, type Logger } from "@stepwise/engine";
import { DEV_SIGNING_KEY } from "@stepwise/protocol";
import { RedisQueue } from "@stepwise/queue-redis";
import { createNeonClient, PostgresStore } from "@stepwise/store-postgres/edge";
import type { DurableObjectNamespace } from "./cloudflare.ts";

/** What wrangler.toml binds: vars (plain text) and secrets, plus the scheduler object. */
export interface Env {
  DATABASE_URL?: string;
  UPSTASH_REDIS_REST_URL?: string;
  UPSTASH_REDIS_REST_TOKEN?: string;
  STEPWISE_REDIS_PREFIX?: string;
  STEPWISE_SIGNING_KEY?: string;
  STEPWISE_SIGNING_KEY_NEXT?: string;
  STEPWISE_APP_SIGNING_KEYS?: string;
  STEPWISE_EVENT_KEY?: string;
  STEPWISE_API_KEY?: string;
  STEPWISE_DASHBOARD_KEY?: string;
  STEPWISE_DEV?: string;
  STEPWISE_WS_PROXY?: string;
  STEPWISE_DRAIN_BUDGET_MS?: string;
  STEPWISE_DRAIN_MAX_JOBS?: string;
  STEPWISE_CONCURRENCY?: string;
  STEPWISE_LEASE_MS?: string;
  STEPWISE_INVOKE_TIMEOUT_MS?: string;
  STEPWISE_RETRY_INITIAL_MS?: string;
  STEPWISE_RETRY_MAX_MS?: string;
  STEPWISE_ALLOW_PRIVATE_APP_URLS?: string;
  /** Where people and services reach this Worker: the base of callback URLs (`step.createCallback`). */
  STEPWISE_PUBLIC_URL?: string;
  SCHEDULER: DurableObjectNamespace;
}

/** Settings read from {@link Env}, checked once per invocation (cheap: a few strings). */
export interface Settings {
  dev: boolean;
  signingKey: string;
  signingKeys: string[];
  /** Apps with keys of their own, by app ID. */
  appSigningKeys: Record<string, string>;
  eventKey?: string;
  /** Bearer key of the run and function routes. */
  apiKey?: string;
  /** The key people sign in to the dashboard with; without it (and outside dev mode) the dashboard is off. */
  dashboardKey?: string;
  budgetMs: number;
  /** Jobs per drain: each job is a few subrequests (the app, Redis), and Workers cap those per invocation. */
  maxJobs: number;
  concurrency: number;
  /** Apps may register loopback and private URLs outside dev mode. */
  allowPrivateAppUrls: boolean;
  publicUrl?: string;
}

export function readSettings(env: Env): Settings {
  const dev = env.STEPWISE_DEV === "1" || env.STEPWISE_DEV === "true";
  const signingKey = env.STEPWISE_SIGNING_KEY || (dev ? DEV_SIGNING_KEY : undefined);
  if (!signingKey) throw new Error("STEPWISE_SIGNING_KEY is required unless STEPWISE_DEV=1: apps verify every request with it");
  return {
    dev,
    signingKey,
    signingKeys: [signingKey, env.STEPWISE_SIGNING_KEY_NEXT].filter((key): key is string => !!key),
    appSigningKeys: parseAppSigningKeys(env.STEPWISE_APP_SIGNING_KEYS),
    eventKey: env.STEPWISE_EVENT_KEY || undefined,
    apiKey: env.STEPWISE_API_KEY || undefined,
    dashboardKey: env.STEPWISE_DASHBOARD_KEY || undefined,
    // With the invocation timeout, under the 30 s `waitUntil` may run after the response.
    budgetMs: number(env, "STEPWISE_DRAIN_BUDGET_MS") ?? 10_000,
    maxJobs: number(env, "STEPWISE_DRAIN_MAX_JOBS") ?? 200,
    concurrency: number(env, "STEPWISE_CONCURRENCY") ?? 8,
    allowPrivateAppUrls: env.STEPWISE_ALLOW_PRIVATE_APP_URLS === "1" || env.STEPWISE_ALLOW_PRIVATE_APP_URLS === "true",
    publicUrl: env.STEPWISE_PUBLIC_URL || undefined,
  };
}

/** An executor over a store of its own; `close()` ends its connections. */
export interface OpenExecutor {
  executor: Executor;
  settings: Settings;
  close(): Promise<void>;
}

// Schema checks cost a query; one per isolate is enough (a plain flag, not an I/O object).
let migrated: Promise<void> | undefined;

export async function openExecutor(env: Env, log: Logger = consoleLogger): Promise<OpenExecutor> {
  const settings = readSettings(env);
  if (!env.DATABASE_URL) throw new Error("DATABASE_URL is not set: `wrangler secret put DATABASE_URL` (a Neon or any Postgres URL)");
  const client = createNeonClient({
    connectionString: env.DATABASE_URL,
    // Local runs only: a ws-to-TCP bridge in front of a plain Postgres, over plain ws:.
    wsProxy: env.STEPWISE_WS_PROXY || undefined,
    // One request rarely needs more; Neon's proxy multiplexes behind it anyway.
    max: Math.max(2, Math.min(settings.concurrency, 10)),
    onError: (error) => log.warn(`postgres connection error: ${error.message}`),
  });
  const readyQueue =
    env.UPSTASH_REDIS_REST_URL && env.UPSTASH_REDIS_REST_TOKEN
      ? new RedisQueue({ url: env.UPSTASH_REDIS_REST_URL, token: env.UPSTASH_REDIS_REST_TOKEN, prefix: env.STEPWISE_REDIS_PREFIX || undefined })
      : undefined;
  const store = new PostgresStore(client, { readyQueue, warn: (line) => log.warn(line) });
  try {
    await (migrated ??= store.migrate().catch((error: unknown) => {
      migrated = undefined;
      throw error;
    }));
  } catch (error) {
    await store.close().catch(() => {});
    throw error;
  }
  const executor = new Executor({
    store,
    signingKey: settings.signingKey,
    signingKeyNext: settings.signingKeys[1],
    appSigningKeys: settings.appSigningKeys,
    publicUrl: settings.publicUrl,
    log,
    concurrency: settings.concurrency,
    leaseMs: number(env, "STEPWISE_LEASE_MS"),
    invokeTimeoutMs: number(env, "STEPWISE_INVOKE_TIMEOUT_MS") ?? 20_000,
    backoff: { initialMs: number(env, "STEPWISE_RETRY_INITIAL_MS"), maxMs: number(env, "STEPWISE_RETRY_MAX_MS") },
    // Each request is its own short-lived executor: the registry cache must not outlive it anyway.
    workerId: `worker-${crypto.randomUUID()}`,
  });
  return { executor, settings, close: () => store.close() };
}

function number(env: Env, name: Exclude<keyof Env, "SCHEDULER">): number | undefined {
  const value = env[name];
  if (value === undefined || value === "") return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0) throw new Error(`${name} must be a non-negative number, got "${value}"`);
  return parsed;
}
