/**
 * `wrangler dev` in tests: starts a Worker (executor or app) in local workerd on free ports in
 * its own process group and temp persist folder, and polls the run API of an executor.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunView } from "@stepwise/engine";
import { freePort } from "./net.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
/** How long `wrangler dev` may take to answer. */
export const START_TIMEOUT_MS = 60_000;
/** The executor Worker's config (the top-level wrangler.toml). */
export const EXECUTOR_CONFIG = join(ROOT, "wrangler.toml");

export interface RunningWorker {
  url: string;
  /** What wrangler and workerd printed, a line each, prefixed with the time it arrived (ISO 8601). */
  output: string[];
  stop(): Promise<void>;
}

/**
 * Starts `wrangler dev` on `config` (at `port`, or a free one); resolves once /health answers,
 * or rejects with wrangler's output.
 */
export async function startWorker(config: string, vars: Record<string, string>, port?: number): Promise<RunningWorker> {
  port ??= await freePort();
  const inspectorPort = await freePort();
  const persist = mkdtempSync(join(tmpdir(), "stepwise-wrangler-"));
  const args = [WRANGLER, "dev", "--config", config, "--ip", "127.0.0.1", "--port", String(port)];
  args.push("--inspector-port", String(inspectorPort), "--persist-to", persist, "--show-interactive-dev-session=false");
  // Exposes /__scheduled, to run the cron handler (wrangler dev never fires crons by itself).
  args.push("--test-scheduled");
  for (const [name, value] of Object.entries(vars)) args.push("--var", `${name}:${value}`);
  // Its own process group, so stopping it also stops workerd.
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: join(config, ".."),
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: process.env.CI ?? "" },
  });
  const output: string[] = [];
  // Stamped as they arrive, so two Workers' lines can be laid side by side (see `timeline`).
  const capture = (chunk: Buffer) => {
    const at = new Date().toISOString();
    for (const line of chunk.toString().split("\n")) if (line) output.push(`${at} ${line}`);
  };
  child.stdout?.on("data", capture);
  child.stderr?.on("data", capture);
  let exited = false;
  child.once("exit", () => (exited = true));
  const stop = async () => {
    if (!exited && child.pid) {
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        // Already gone.
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    rmSync(persist, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline && !exited) {
    const ok = await fetch(`${url}/health`).then((r) => r.ok, () => false);
    if (ok) return { url, output, stop };
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  await stop();
  throw new Error(`wrangler dev did not start (${exited ? "it exited" : "timed out"}):\n${output.slice(-40).join("\n")}`);
}

/** Polls the executor's run API (with the signing key) until the event's run satisfies `done`. */
export async function waitFor(
  base: string,
  eventId: string,
  done: (run: RunView) => boolean,
  timeoutMs: number,
  logs: () => string,
  apiKey: string,
): Promise<RunView> {
  const deadline = Date.now() + timeoutMs;
  let last: RunView | undefined;
  while (Date.now() < deadline) {
    const response = await fetch(`${base}/api/events/${eventId}/runs`, { headers: { authorization: `Bearer ${apiKey}` } });
    if (response.ok) {
      last = ((await response.json()) as { runs: RunView[] }).runs[0];
      if (last && done(last)) return last;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`run of event ${eventId} not as expected after ${timeoutMs} ms; last: ${JSON.stringify(last)}\n${logs()}`);
}

/**
 * Every Worker's lines from `beforeMs` before the first line of `focus` matching `pattern` to
 * `afterMs` after it, merged by time and labelled: a failure in one Worker's log (workerd's
 * "disconnected" errors name no peer) read beside what the others were doing then. Empty when
 * nothing matches.
 */
export function timeline(pattern: RegExp, logs: Record<string, RunningWorker>, focus: string, beforeMs = 3_000, afterMs = 1_000): string {
  const lines = Object.entries(logs).flatMap(([label, { output }]) => output.map((line) => ({ label, line, at: Date.parse(line.slice(0, 24)) })));
  const hit = lines.find(({ label, line }) => label === focus && pattern.test(line));
  if (!hit) return "";
  return lines
    .filter(({ at }) => at >= hit.at - beforeMs && at <= hit.at + afterMs)
    .sort((a, b) => a.at - b.at)
    .map(({ label, line }) => `[${label}] ${line}`)
    .join("\n");
}
