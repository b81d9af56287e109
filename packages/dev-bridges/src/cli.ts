/**
 * Command line for the dev bridges, e.g.
 *   npx tsx packages/dev-bridges/src/cli.ts ws-tcp --port 5433 [--host 127.0.0.1] [--allow 127.0.0.1:5432,...]
 * Prints one line saying where it listens, then runs until SIGINT/SIGTERM.
 */
import { parseArgs } from "node:util";
import { startWsTcpBridge, DEFAULT_ALLOWED_TARGETS } from "./ws-tcp-bridge.ts";

const USAGE = "usage: cli.ts ws-tcp [--port 5433] [--host 127.0.0.1] [--allow host:port,host:port]";

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
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid --port ${values.port}`);
    const allowedTargets = values.allow ? values.allow.split(",").map((s) => s.trim()) : DEFAULT_ALLOWED_TARGETS;
    const bridge = await startWsTcpBridge({ port, host: values.host, allowedTargets });
    console.log(`ws-tcp bridge listening on ${bridge.url} (wsProxy "${bridge.url.slice(5)}/v2", targets ${allowedTargets.join(", ")})`);
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
