/** Executor settings from the environment, so `stepwise dev` and `start` share one reading. */
import { MIN_DEPLOYMENT_GONE_AFTER_MS, parseAppSigningKeys } from "@stepwise/engine";
import { toMs } from "@stepwise/protocol";

export interface EnvSettings {
  signingKey?: string;
  signingKeyNext?: string;
  /** Apps with keys of their own (`STEPWISE_APP_SIGNING_KEYS=shop=<key>,billing=<key>`). */
  appSigningKeys: Record<string, string>;
  eventKey?: string;
  /** Bearer key of the run and function routes (`STEPWISE_API_KEY`); they are closed without it outside dev mode. */
  apiKey?: string;
  /** The key people sign in to the dashboard with (`STEPWISE_DASHBOARD_KEY`); outside dev mode the dashboard is off without it. */
  dashboardKey?: string;
  appUrls: string[];
  dataDir?: string;
  databaseUrl?: string;
  /** First retry delay for functions that set no backoff (tests use a few ms). */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Upstash (or the local bridge): the queue goes to Redis when both are set. */
  redisRestUrl?: string;
  redisRestToken?: string;
  redisPrefix?: string;
  /** Jobs one executor process runs at once. */
  concurrency?: number;
  /** How long a claimed job is held before another executor may take it over. */
  leaseMs?: number;
  /**
   * How `stepwise start` reaches Postgres: "neon" (the Neon driver over WebSocket, default),
   * "neon-http" (the same, with single statements over Neon's HTTP endpoint), or "pg" (plain
   * TCP, for Node deployments on any Postgres).
   */
  postgresDriver: "neon" | "neon-http" | "pg";
  /** How often the queue is checked against the record (default 15 s). */
  maintenanceMs?: number;
  /** How old a job must be before reconcile re-adds it to Redis (default 5 s). */
  reconcileGraceMs?: number;
  /** How long a run's pinned deployment may refuse connections before its runs move (default 60 s; 0: at once). */
  deploymentGoneAfterMs?: number;
  /** How long finished runs and old events are kept (`STEPWISE_RETENTION`: "7d", "12h"; "0" keeps all). Default 7 days. */
  retentionMs?: number;
  /** Apps may register loopback and private URLs outside dev mode (`STEPWISE_ALLOW_PRIVATE_APP_URLS=1`). */
  allowPrivateAppUrls: boolean;
  /** Where people and services reach the executor (`STEPWISE_PUBLIC_URL`): the base of callback URLs. */
  publicUrl?: string;
}

export function readEnv(env: Record<string, string | undefined> = process.env): EnvSettings {
  const number = (name: string) => {
    const value = env[name];
    if (value === undefined || value === "") return undefined;
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`${name} must be a positive number of milliseconds, got "${value}"`);
    return parsed;
  };
  return {
    signingKey: env.STEPWISE_SIGNING_KEY || undefined,
    signingKeyNext: env.STEPWISE_SIGNING_KEY_NEXT || undefined,
    appSigningKeys: parseAppSigningKeys(env.STEPWISE_APP_SIGNING_KEYS),
    eventKey: env.STEPWISE_EVENT_KEY || undefined,
    apiKey: env.STEPWISE_API_KEY || undefined,
    dashboardKey: env.STEPWISE_DASHBOARD_KEY || undefined,
    appUrls: (env.STEPWISE_APP_URLS ?? "").split(",").map((url) => url.trim()).filter(Boolean),
    dataDir: env.STEPWISE_DATA_DIR || undefined,
    databaseUrl: env.DATABASE_URL || undefined,
    retryInitialMs: number("STEPWISE_RETRY_INITIAL_MS"),
    retryMaxMs: number("STEPWISE_RETRY_MAX_MS"),
    redisRestUrl: env.UPSTASH_REDIS_REST_URL || undefined,
    redisRestToken: env.UPSTASH_REDIS_REST_TOKEN || undefined,
    redisPrefix: env.STEPWISE_REDIS_PREFIX || undefined,
    concurrency: number("STEPWISE_CONCURRENCY"),
    leaseMs: number("STEPWISE_LEASE_MS"),
    postgresDriver: driver(env.STEPWISE_PG_DRIVER),
    maintenanceMs: number("STEPWISE_MAINTENANCE_MS"),
    reconcileGraceMs: number("STEPWISE_RECONCILE_GRACE_MS"),
    deploymentGoneAfterMs: goneAfter(env.STEPWISE_DEPLOYMENT_GONE_AFTER_MS === "0" ? 0 : number("STEPWISE_DEPLOYMENT_GONE_AFTER_MS")),
    retentionMs: duration(env.STEPWISE_RETENTION, "STEPWISE_RETENTION"),
    allowPrivateAppUrls: env.STEPWISE_ALLOW_PRIVATE_APP_URLS === "1" || env.STEPWISE_ALLOW_PRIVATE_APP_URLS === "true",
    publicUrl: env.STEPWISE_PUBLIC_URL || undefined,
  };
}

/** 0 is meant (the first refused connection moves a deployment's runs); a window shorter than the engine's least is said to be wrong, not raised in silence. */
function goneAfter(ms: number | undefined): number | undefined {
  if (ms === undefined || ms === 0 || ms >= MIN_DEPLOYMENT_GONE_AFTER_MS) return ms;
  throw new Error(
    `STEPWISE_DEPLOYMENT_GONE_AFTER_MS must be 0 (the first refused connection moves a deployment's runs) or at least ${MIN_DEPLOYMENT_GONE_AFTER_MS} ms (a shorter window could take a restart for a deployment gone), got "${ms}"`,
  );
}

function duration(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === "") return undefined;
  try {
    return toMs(/^\d+$/.test(value) ? Number(value) : value);
  } catch {
    throw new Error(`${name} must be a duration such as "7d", "12h" or "30m" (0 keeps everything), got "${value}"`);
  }
}

function driver(value: string | undefined): EnvSettings["postgresDriver"] {
  if (!value) return "neon";
  if (value === "neon" || value === "neon-http" || value === "pg") return value;
  throw new Error(`STEPWISE_PG_DRIVER must be neon, neon-http or pg, got "${value}"`);
}
