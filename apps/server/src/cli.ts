/**
 * The `stepwise` command: the executor itself (`dev`, `start`: executor-command.ts) or a client
 * of a running one (`send`, `signal`, `runs`, `run`, `cancel`, `replay`, `rerun`: commands.ts). The executor's modules are
 * loaded only to run it, so a client command starts without the stores and their drivers.
 */
import { CLIENT_COMMANDS, CLIENT_USAGE, runClientCommand } from "./commands.ts";

const USAGE = `Usage:
  stepwise dev   [--port 8288] [--host 127.0.0.1] [--app URL]... [--data-dir .stepwise/data]
  stepwise start [--port 8288] [--host 0.0.0.0] [--app URL]... [--database-url URL] [--ws-proxy HOST:PORT]
                 [--concurrency 100] [--lease-ms 30000]
${CLIENT_USAGE}

Environment: STEPWISE_SIGNING_KEY, STEPWISE_SIGNING_KEY_NEXT, STEPWISE_APP_SIGNING_KEYS (app=key,…), STEPWISE_EVENT_KEY, STEPWISE_API_KEY, STEPWISE_DASHBOARD_KEY, STEPWISE_APP_URLS,
STEPWISE_DATA_DIR, DATABASE_URL, UPSTASH_REDIS_REST_URL, UPSTASH_REDIS_REST_TOKEN, STEPWISE_REDIS_PREFIX,
STEPWISE_PG_DRIVER (neon | neon-http | pg), STEPWISE_CONCURRENCY, STEPWISE_LEASE_MS, STEPWISE_MAINTENANCE_MS, STEPWISE_RECONCILE_GRACE_MS,
STEPWISE_DEPLOYMENT_GONE_AFTER_MS (how long a run's own deployment may refuse connections before its runs move, default 60000, at least 4000; 0: the first refusal),
STEPWISE_RETRY_INITIAL_MS, STEPWISE_RETRY_MAX_MS, STEPWISE_RETENTION (how long finished runs are kept, default 7d),
STEPWISE_ALLOW_PRIVATE_APP_URLS=1 (apps may register loopback and private URLs outside dev mode),
STEPWISE_PUBLIC_URL (where people and services reach the executor: the base of callback URLs; default its own address)`;

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const client = CLIENT_COMMANDS.find((name) => name === command);
  if (client) {
    process.exitCode = await runClientCommand(client, rest);
    return;
  }
  if (command !== "dev" && command !== "start") {
    console.log(USAGE);
    process.exitCode = command === "--help" || command === "help" ? 0 : 2;
    return;
  }
  const { runExecutorCommand } = await import("./executor-command.ts");
  await runExecutorCommand(command, rest);
}
