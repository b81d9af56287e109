/**
 * The fetch adapter on Bun and on Deno, run by the runtimes themselves (their binaries come from
 * npm as optional dependencies): an app bundled from test/runtimes/app.ts registers with a real
 * executor, and a run goes through a step, a sleep and a checkpointed step there; a tampered
 * signature is refused by the runtime's WebCrypto. A system suite: it starts other runtimes
 * beside the executor, and so runs alone rather than beside the timing-sensitive main suites.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { HEADERS } from "@stepwise/protocol";
import { startServer, type RunningServer } from "@stepwise/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signInvocation } from "../../packages/sdk/test/helpers.ts";
import { eventually } from "../support/eventually.ts";
import { freePort } from "../support/net.ts";
import { memoryLogger, openStore } from "../support/stack.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const RUNTIMES = [
  { name: "bun", binary: join(ROOT, "node_modules/@oven/bun-linux-x64/bin/bun"), args: (bundle: string) => ["run", bundle] },
  {
    name: "deno",
    binary: join(ROOT, "node_modules/@deno/linux-x64-glibc/deno"),
    args: (bundle: string) => ["run", "--allow-net=127.0.0.1", "--allow-env", bundle],
  },
];
const available = RUNTIMES.filter((runtime) => existsSync(runtime.binary));
if (process.env.CI === "true" && available.length < RUNTIMES.length && process.platform === "linux" && process.arch === "x64") {
  throw new Error(`Bun or Deno is missing from node_modules (run npm ci): found ${available.map((runtime) => runtime.name).join(", ") || "neither"}`);
}

describe.skipIf(available.length === 0)("the fetch adapter on Bun and Deno", () => {
  let work: string;
  let bundle: string;
  let executor: RunningServer;
  let cleanup: () => Promise<void>;
  const log = memoryLogger();
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "stepwise-runtimes-"));
    bundle = join(work, "app.mjs");
    await build({ entryPoints: [join(ROOT, "test/runtimes/app.ts")], bundle: true, format: "esm", platform: "neutral", mainFields: ["module", "main"], outfile: bundle, logLevel: "error" });
    const opened = await openStore("pglite");
    cleanup = opened.cleanup;
    executor = await startServer({ store: opened.store, dev: true, port: 0, log, allowPrivateAppUrls: true, backoff: { initialMs: 20, maxMs: 200 } });
  }, 60_000);

  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
    await executor?.close();
    await cleanup?.();
    rmSync(work, { recursive: true, force: true });
  });

  it.each(available)("$name serves a run through a step, a sleep and a checkpointed step", async (runtime) => {
    const port = await freePort();
    const output: string[] = [];
    const child = spawn(runtime.binary, runtime.args(bundle), {
      env: { ...process.env, PORT: String(port), STEPWISE_DEV: "1", STEPWISE_BASE_URL: executor.url, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    for (const stream of [child.stdout, child.stderr]) stream.on("data", (chunk: Buffer) => output.push(chunk.toString()));
    const appUrl = `http://127.0.0.1:${port}/api/durable`;
    const context = () => `${runtime.name}: ${output.join("")}\n${log.lines.slice(-20).join("\n")}`;
    const until = <T>(what: string, attempt: () => Promise<T | undefined>) => eventually(what, attempt, { context });
    // The app registers itself (PUT), as after a deploy.
    await until("the app's registration", async () => ((await fetch(appUrl, { method: "PUT" })).ok ? true : undefined));

    const sent = await fetch(`${executor.url}/api/events`, { method: "POST", body: JSON.stringify({ name: "runtime/hello", data: { name: "Ada" } }) });
    const { ids } = (await sent.json()) as { ids: string[] };
    const run = await until("the run's end", async () => {
      const { runs } = (await (await fetch(`${executor.url}/api/events/${ids[0]}/runs`)).json()) as { runs: { id: string; status: string }[] };
      const ended = runs.find((candidate) => ["completed", "failed", "cancelled"].includes(candidate.status));
      return ended ? ((await (await fetch(`${executor.url}/api/runs/${ended.id}`)).json()) as { status: string; output: unknown }) : undefined;
    });
    expect(run.status).toBe("completed");
    expect(run.output).toMatch(new RegExp(`^hello Ada from ${runtime.name} \\d`));
    expect(log.lines.join("\n")).toMatch(/step "greet" completed in \d+ms \(checkpoint\)/);

    // The runtime's WebCrypto checks the HMAC: one made with another key is refused.
    const target = `${appUrl}?fnId=runtimes-hello`;
    const refused = await fetch(target, {
      method: "POST",
      headers: { "content-type": "application/json", [HEADERS.signature]: await signInvocation("not-the-dev-key", target, "{}") },
      body: "{}",
    });
    expect(refused.status).toBe(401);
  }, 60_000);
});
