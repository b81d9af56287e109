/**
 * `stepwise dev`   the executor on an embedded PGlite store in a local folder; no services.
 * `stepwise start` the executor on Postgres (DATABASE_URL, through the Neon driver).
 */
import { mkdirSync } from "node:fs";
import { parseArgs } from "node:util";
import { createNeonClient, createPgliteClient, PostgresStore } from "@stepwise/store-postgres";
import { consoleLogger } from "@stepwise/engine";
import { readEnv } from "./env.ts";
import { startServer } from "./server.ts";

const USAGE = `Usage:
  stepwise dev   [--port 8288] [--host 127.0.0.1] [--app URL]... [--data-dir .stepwise/data]
  stepwise start [--port 8288] [--host 0.0.0.0] [--app URL]... [--database-url URL] [--ws-proxy HOST:PORT]

Environment: STEPWISE_SIGNING_KEY, STEPWISE_SIGNING_KEY_NEXT, STEPWISE_EVENT_KEY, STEPWISE_APP_URLS,
STEPWISE_DATA_DIR, DATABASE_URL, STEPWISE_RETRY_INITIAL_MS, STEPWISE_RETRY_MAX_MS`;

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command !== "dev" && command !== "start") {
    console.log(USAGE);
    process.exitCode = command === "--help" || command === "help" ? 0 : 2;
    return;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      port: { type: "string", default: process.env.PORT ?? "8288" },
      host: { type: "string" },
      app: { type: "string", multiple: true, default: [] },
      "data-dir": { type: "string" },
      "database-url": { type: "string" },
      "ws-proxy": { type: "string" },
    },
  });
  const env = readEnv();
  const dev = command === "dev";
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`--port must be a port number, got "${values.port}"`);

  const store = dev ? await embeddedStore(values["data-dir"] ?? env.dataDir ?? ".stepwise/data") : postgresStore(values, env);
  const server = await startServer({
    store,
    dev,
    port,
    host: values.host ?? (dev ? "127.0.0.1" : "0.0.0.0"),
    appUrls: [...(values.app ?? []), ...env.appUrls],
    signingKey: env.signingKey,
    signingKeyNext: env.signingKeyNext,
    eventKey: env.eventKey,
    exclusiveStore: dev,
    backoff: { initialMs: env.retryInitialMs, maxMs: env.retryMaxMs },
    log: consoleLogger,
  });
  consoleLogger.info(`stepwise ${command}: executor listening on ${server.url} (send events to ${server.url}/api/events)`);
  for (const url of [...(values.app ?? []), ...env.appUrls]) consoleLogger.info(`watching app ${url}`);

  const shutdown = (signal: string) => {
    consoleLogger.info(`${signal}: finishing running jobs, then stopping`);
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        consoleLogger.error(`shutdown failed: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", () => shutdown("SIGINT"));
  process.once("SIGTERM", () => shutdown("SIGTERM"));
}

async function embeddedStore(dataDir: string): Promise<PostgresStore> {
  mkdirSync(dataDir, { recursive: true });
  consoleLogger.info(`embedded store (PGlite) in ${dataDir}`);
  return new PostgresStore(await createPgliteClient({ dataDir }));
}

function postgresStore(values: { "database-url"?: string; "ws-proxy"?: string }, env: ReturnType<typeof readEnv>) {
  const connectionString = values["database-url"] ?? env.databaseUrl;
  if (!connectionString) throw new Error("stepwise start needs DATABASE_URL (or --database-url) pointing at Postgres");
  return new PostgresStore(createNeonClient({ connectionString, wsProxy: values["ws-proxy"] }));
}
