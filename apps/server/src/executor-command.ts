/**
 * The commands that run the executor (the rest of `stepwise` is in cli.ts and commands.ts):
 * `stepwise dev`   the executor on an embedded PGlite store in a local folder; no services.
 * `stepwise start` the production executor: Postgres (DATABASE_URL) as the record, and the
 *                  queue in Redis (UPSTASH_REDIS_REST_URL/TOKEN) or, without them, in Postgres.
 *                  Run as many as the load needs; they share work through the stores alone.
 */
import { mkdirSync } from "node:fs";
import { parseArgs } from "node:util";
import { stdioLogger as log } from "./log.ts";
import { createNeonClient, createPgClient, createPgliteClient, PostgresStore } from "@stepwise/store-postgres";
import { RedisQueue } from "@stepwise/queue-redis";
import { DASHBOARD_OFF } from "@stepwise/dashboard";
import { readEnv, type EnvSettings } from "./env.ts";
import { startServer } from "./server.ts";



type Flags = Record<string, string | string[] | undefined>;

/** How long running jobs may take to finish at shutdown before they are given back. */
const SHUTDOWN_GRACE_MS = 10_000;
const SHUTDOWN_MARGIN_MS = 5_000;

/** `stepwise dev` or `stepwise start` with the rest of the command line: runs until a signal stops it. */
export async function runExecutorCommand(command: "dev" | "start", rest: string[]): Promise<void> {
  const { values } = parseArgs({
    args: rest,
    options: {
      port: { type: "string", default: process.env.PORT ?? "8288" },
      host: { type: "string" },
      app: { type: "string", multiple: true, default: [] },
      "data-dir": { type: "string" },
      "database-url": { type: "string" },
      "ws-proxy": { type: "string" },
      concurrency: { type: "string" },
      "lease-ms": { type: "string" },
    },
  });
  const env = readEnv();
  const dev = command === "dev";
  const port = integer("--port", values.port, 0, 65_535)!;
  const appUrls = [...(values.app ?? []), ...env.appUrls];

  const store = dev ? embeddedStore(values["data-dir"] ?? env.dataDir ?? ".stepwise/data") : productionStore(values, env);
  const server = await startServer({
    store,
    dev,
    port,
    host: values.host ?? (dev ? "127.0.0.1" : "0.0.0.0"),
    appUrls,
    signingKey: env.signingKey,
    signingKeyNext: env.signingKeyNext,
    appSigningKeys: env.appSigningKeys,
    eventKey: env.eventKey,
    apiKey: env.apiKey,
    dashboardKey: env.dashboardKey,
    exclusiveStore: dev,
    backoff: { initialMs: env.retryInitialMs, maxMs: env.retryMaxMs },
    retentionMs: env.retentionMs,
    allowPrivateAppUrls: env.allowPrivateAppUrls,
    publicUrl: env.publicUrl,
    concurrency: integer("--concurrency", values.concurrency, 1, 10_000) ?? env.concurrency,
    leaseMs: integer("--lease-ms", values["lease-ms"], 1_000, 3_600_000) ?? env.leaseMs,
    maintenanceMs: env.maintenanceMs,
    deploymentGoneAfterMs: env.deploymentGoneAfterMs,
    log,
  });
  log.info(`stepwise ${command}: executor listening on ${server.url} (send events to ${server.url}/api/events)`);
  if (dev || env.dashboardKey) log.info(`dashboard: ${server.url}/${dev ? "" : " (sign in with STEPWISE_DASHBOARD_KEY)"}`);
  else log.info(DASHBOARD_OFF);
  for (const url of appUrls) log.info(`watching app ${url}`);

  const shutdown = (signal: string) => {
    log.info(`${signal}: no new work; finishing running jobs (up to ${SHUTDOWN_GRACE_MS / 1_000}s), then stopping`);
    // Whatever hangs (a connection that will not close), the process ends a little after the grace period.
    setTimeout(() => {
      log.error(`shutdown took longer than ${(SHUTDOWN_GRACE_MS + SHUTDOWN_MARGIN_MS) / 1_000}s; exiting now (leased jobs run again elsewhere)`);
      process.exit(1);
    }, SHUTDOWN_GRACE_MS + SHUTDOWN_MARGIN_MS).unref();
    server.close(SHUTDOWN_GRACE_MS).then(
      () => process.exit(0),
      (error: unknown) => {
        log.error(`shutdown failed: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", () => shutdown("SIGINT"));
  process.once("SIGTERM", () => shutdown("SIGTERM"));
}

function integer(flag: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < min || parsed > max) throw new Error(`${flag} must be a whole number from ${min} to ${max}, got "${value}"`);
  return parsed;
}

function embeddedStore(dataDir: string): PostgresStore {
  mkdirSync(dataDir, { recursive: true });
  log.info(`embedded store (PGlite) in ${dataDir}`);
  return new PostgresStore(createPgliteClient({ dataDir }));
}

/**
 * How long the executor keeps an idle connection to Postgres. A new connection runs the hot
 * statements on plans made afresh for their first runs, at several times their cost once
 * planned (the change statement's second to sixth runs took 3.5 ms on average, later ones 0.9),
 * so a burst after a quiet spell longer than the driver's 10 s paid that again on every
 * connection it opened: after 15 s idle, two bursts of 200 runs cost Postgres 470-710 ms of CPU
 * (mean 578) against 430-550 (mean 476) with the connections kept. Under Neon's five minutes:
 * an idle connection does not keep a Neon compute up (it suspends after five minutes without a
 * query, closing what is connected), and the pool closes its own first.
 */
const POOL_IDLE_MS = 2 * 60_000;

function productionStore(values: Flags, env: EnvSettings): PostgresStore {
  const connectionString = (values["database-url"] as string | undefined) ?? env.databaseUrl;
  if (!connectionString) throw new Error("stepwise start needs DATABASE_URL (or --database-url) pointing at Postgres");
  const wsProxy = values["ws-proxy"] as string | undefined;
  const onError = (error: Error) => log.warn(`postgres connection error: ${error.message}`);
  const idleTimeoutMs = POOL_IDLE_MS;
  const client =
    env.postgresDriver === "pg"
      ? createPgClient({ connectionString, onError, idleTimeoutMs })
      : createNeonClient({ connectionString, wsProxy, onError, idleTimeoutMs, http: env.postgresDriver === "neon-http" || undefined });
  const { host } = new URL(connectionString);
  if (env.redisRestUrl && env.redisRestToken) {
    log.info(`record in Postgres (${host}), queue in Redis (${new URL(env.redisRestUrl).host})`);
    const readyQueue = new RedisQueue({ url: env.redisRestUrl, token: env.redisRestToken, prefix: env.redisPrefix });
    return new PostgresStore(client, { readyQueue, reconcileGraceMs: env.reconcileGraceMs, warn: (line) => log.warn(line) });
  }
  log.info(`record and queue in Postgres (${host}); set UPSTASH_REDIS_REST_URL and _TOKEN to queue in Redis`);
  return new PostgresStore(client);
}
