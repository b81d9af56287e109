/**
 * Command line for the dev bridges, e.g.
 *   npx tsx packages/dev-bridges/src/cli.ts ws-tcp --port 5433 [--host 127.0.0.1] [--allow 127.0.0.1:5432,...]
 *   npx tsx packages/dev-bridges/src/cli.ts upstash --port 8079 --token dev-token [--host 127.0.0.1] [--redis redis://127.0.0.1:6379]
 *   npx tsx packages/dev-bridges/src/cli.ts neon-http --port 4444 [--host 127.0.0.1] [--allow 127.0.0.1:5432,...]
 * Prints one line saying where it listens, then runs until SIGINT/SIGTERM.
 */
import { parseArgs } from "node:util";
import { startWsTcpBridge, DEFAULT_ALLOWED_TARGETS } from "./ws-tcp-bridge.ts";
import { startUpstashBridge } from "./upstash-bridge.ts";
import { startNeonHttpBridge } from "./neon-http-bridge.ts";
import { redactRedisUrl } from "./upstash-redis.ts";

const USAGE = [
  "usage: cli.ts ws-tcp [--port 5433] [--host 127.0.0.1] [--allow host:port,host:port]",
  "       cli.ts upstash --token <token> [--port 8079] [--host 127.0.0.1] [--redis redis://127.0.0.1:6379]",
  "       cli.ts neon-http [--port 4444] [--host 127.0.0.1] [--allow host:port,host:port]",
].join("\n");

function parsePort(value: string | undefined): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid --port ${value}`);
  return port;
}

/** One entry per bridge kind, so other bridges can be added as subcommands. */
const commands: Record<string, (argv: string[]) => Promise<() => Promise<void>>> = {
  "ws-tcp": async (argv) => {
    const { values } = parseArgs({
      args: argv,
      options: {
        port: { type: "string", default: "5433" },
        host: { type: "string", default: "127.0.0.1" },
        allow: { type: "string" },
      },
    });
    const port = parsePort(values.port);
    const allowedTargets = values.allow ? values.allow.split(",").map((s) => s.trim()) : DEFAULT_ALLOWED_TARGETS;
    const bridge = await startWsTcpBridge({ port, host: values.host, allowedTargets });
    console.log(`ws-tcp bridge listening on ${bridge.url} (wsProxy "${bridge.url.slice(5)}/v2", targets ${allowedTargets.join(", ")})`);
    return bridge.close;
  },
  // Neon's SQL-over-HTTP protocol (what `neon()` sends) in front of a local PostgreSQL.
  "neon-http": async (argv) => {
    const { values } = parseArgs({
      args: argv,
      options: {
        port: { type: "string", default: "4444" },
        host: { type: "string", default: "127.0.0.1" },
        allow: { type: "string" },
      },
    });
    const allowedTargets = values.allow ? values.allow.split(",").map((s) => s.trim()) : DEFAULT_ALLOWED_TARGETS;
    const bridge = await startNeonHttpBridge({ port: parsePort(values.port), host: values.host, allowedTargets });
    console.log(`neon-http bridge listening on ${bridge.url} (fetchEndpoint "${bridge.url}/sql", targets ${allowedTargets.join(", ")})`);
    return bridge.close;
  },
  upstash: async (argv) => {
    const { values } = parseArgs({
      args: argv,
      options: {
        port: { type: "string", default: "8079" },
        host: { type: "string", default: "127.0.0.1" },
        token: { type: "string" },
        redis: { type: "string", default: "redis://127.0.0.1:6379" },
      },
    });
    if (!values.token) throw new Error(`--token is required\n${USAGE}`);
    const bridge = await startUpstashBridge({
      port: parsePort(values.port),
      host: values.host,
      token: values.token,
      redisUrl: values.redis,
    });
    // The bridge's own token is printed on purpose (it is a dev token); a Redis password is not.
    console.log(`upstash bridge listening on ${bridge.url} (token ${bridge.token}) -> ${redactRedisUrl(bridge.redisUrl)}`);
    return bridge.close;
  },
};

async function main(): Promise<void> {
  const [name, ...rest] = process.argv.slice(2);
  const command = name === undefined ? undefined : commands[name];
  if (!command) {
    console.error(USAGE);
    process.exit(2);
  }
  const close = await command(rest);
  const stop = () => void close().finally(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
