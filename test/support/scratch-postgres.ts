/**
 * A PostgreSQL server of the test's own (initdb in a temp folder, its own port), so a test
 * can stop and restart it without disturbing the shared server other suites use.
 */
import { execFileSync } from "node:child_process";
import { chownSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface ScratchPostgres {
  port: number;
  url: string;
  /** Stops the server (fast: open connections are cut), waits `downMs`, starts it again. */
  restart(downMs: number): Promise<void>;
  stop(): void;
}

const root = "/usr/lib/postgresql";

/** Whether this machine can run a private PostgreSQL (server binaries present). */
export function scratchPostgresAvailable(): boolean {
  try {
    return readdirSync(root).length > 0;
  } catch {
    return false;
  }
}

export function startScratchPostgres(port: number): ScratchPostgres {
  const version = readdirSync(root).sort().at(-1)!;
  const bin = join(root, version, "bin");
  const dir = mkdtempSync(join(tmpdir(), "stepwise-pg-"));
  const asRoot = process.getuid?.() === 0;
  // initdb refuses to run as root: run the server as the postgres user then.
  const run = (tool: string, args: string[]) =>
    asRoot
      ? execFileSync("runuser", ["-u", "postgres", "--", join(bin, tool), ...args], { stdio: "pipe" })
      : execFileSync(join(bin, tool), args, { stdio: "pipe" });
  if (asRoot) chownSync(dir, Number(execFileSync("id", ["-u", "postgres"]).toString().trim()), -1);
  const data = join(dir, "data");
  run("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
  const start = () => run("pg_ctl", ["-D", data, "-o", options, "-l", join(dir, "log"), "start", "-w"]);
  const stop = () => run("pg_ctl", ["-D", data, "stop", "-m", "fast", "-w"]);
  start();
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async restart(downMs) {
      stop();
      await new Promise((resolve) => setTimeout(resolve, downMs));
      start();
    },
    stop() {
      try {
        stop();
      } catch {
        // already stopped
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
