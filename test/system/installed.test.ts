/**
 * Stepwise as a user installs it: every published package built (`npm run build`), packed, and
 * installed from its tarball into an app in a temporary folder outside this repository, with no
 * workspace links. There the user's TypeScript (test/installed/app) compiles under strict
 * `nodenext` and `bundler` resolution with the packages' declarations checked, runs on plain
 * `node` against `npx stepwise dev` from the installed executor, and bundles as a Worker
 * (wrangler) and as a Lambda handler (esbuild).
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../support/eventually.ts";
import { freePort } from "../support/net.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const FIXTURE = join(ROOT, "test/installed/app");
const TSC = join(ROOT, "node_modules/typescript/bin/tsc");
const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
const ESBUILD = join(ROOT, "node_modules/esbuild/bin/esbuild");
const run = promisify(execFile);

/** Runs a command in the app's folder; rejects with its output when it fails. */
async function inApp(dir: string, command: string, args: string[], timeout = 120_000): Promise<string> {
  try {
    const { stdout, stderr } = await run(command, args, { cwd: dir, timeout, env: { ...process.env, WRANGLER_SEND_METRICS: "false" } });
    return stdout + stderr;
  } catch (error) {
    const { stdout = "", stderr = "", message } = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${command} ${args.join(" ")} failed: ${message}\n${stdout}\n${stderr}`);
  }
}

function* files(dir: string): Generator<string> {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) yield* files(path);
    else yield path;
  }
}

describe("the packages installed from their tarballs, outside the repository", () => {
  let work: string;
  let app: string;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "stepwise-installed-"));
    const out = join(work, "packages");
    await inApp(ROOT, process.execPath, [join(ROOT, "scripts/build.mjs"), "--pack", "--out", out], 180_000);
    app = join(work, "app");
    cpSync(FIXTURE, app, { recursive: true });
    const dependencies: Record<string, string> = { zod: "^4.1.0" };
    for (const tarball of readdirSync(join(out, "tarballs"))) {
      const name = /^stepwise-(.+)-\d+\.\d+\.\d+\.tgz$/.exec(tarball)?.[1];
      if (name) dependencies[`@stepwise/${name}`] = `file:${join(out, "tarballs", tarball)}`;
    }
    const manifest = { name: "installed-app", private: true, type: "module", dependencies, devDependencies: { "@types/node": "^20.19.43" } };
    writeFileSync(join(app, "package.json"), JSON.stringify(manifest, null, 2));
    await inApp(app, "npm", ["install", "--prefer-offline", "--no-audit", "--no-fund"], 240_000);
  }, 420_000);

  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 300));
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("installs compiled JavaScript with declarations: no TypeScript source, no TypeScript loader", () => {
    const installed = join(app, "node_modules/@stepwise");
    const names = readdirSync(installed);
    expect(names).toEqual(expect.arrayContaining(["sdk", "protocol", "server", "engine", "store-postgres", "api", "dashboard", "queue-redis"]));
    const sources = [...files(installed)].filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts"));
    expect(sources).toEqual([]);
    expect(existsSync(join(app, "node_modules/tsx"))).toBe(false);
    for (const name of names) {
      const manifest = JSON.parse(readFileSync(join(installed, name, "package.json"), "utf8"));
      expect(manifest.license, name).toBe("Apache-2.0");
      expect(existsSync(join(installed, name, "LICENSE")), name).toBe(true);
      for (const [subpath, target] of Object.entries(manifest.exports as Record<string, { types: string; default: string }>)) {
        expect(existsSync(join(installed, name, target.default)), `${name} ${subpath}`).toBe(true);
        expect(existsSync(join(installed, name, target.types)), `${name} ${subpath}`).toBe(true);
      }
    }
    const bin = readFileSync(join(installed, "server", JSON.parse(readFileSync(join(installed, "server/package.json"), "utf8")).bin.stepwise), "utf8");
    expect(bin.startsWith("#!/usr/bin/env node")).toBe(true);
  });

  it("typechecks the user's code under strict nodenext, declarations included, and compiles it (every framework entry too)", async () => {
    // tsconfig.json: strict, NodeNext, skipLibCheck off; its @ts-expect-error lines fail the build
    // if a wrong event field type went unnoticed.
    await inApp(app, process.execPath, [TSC, "-p", "tsconfig.json"]);
    expect(existsSync(join(app, "build/app.js"))).toBe(true);
  });

  it("typechecks the user's code under bundler resolution", async () => {
    await inApp(app, process.execPath, [TSC, "-p", "tsconfig.bundler.json"]);
  });

  it("runs the compiled app on plain node against `npx stepwise dev`: a step, a sleep, a step", async () => {
    const [executorPort, appPort] = [await freePort(), await freePort()];
    const appUrl = `http://127.0.0.1:${appPort}/api/durable`;
    const executorUrl = `http://127.0.0.1:${executorPort}`;
    const logs: string[] = [];
    const start = (command: string, args: string[], env: Record<string, string>) => {
      const child = spawn(command, args, { cwd: app, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
      for (const stream of [child.stdout, child.stderr]) stream?.on("data", (chunk: Buffer) => logs.push(chunk.toString()));
      children.push(child);
      return child;
    };
    start("npx", ["--no", "stepwise", "dev", "--port", String(executorPort), "--app", appUrl, "--data-dir", join(app, "data")], {});
    start(process.execPath, ["build/app.js"], { PORT: String(appPort), STEPWISE_DEV: "1", STEPWISE_BASE_URL: executorUrl });

    const until = <T>(what: string, attempt: () => Promise<T | undefined>) => eventually(what, attempt, { timeoutMs: 60_000, context: () => logs.join("") });
    await until("the app's sync", async () => (logs.join("").includes("installed-greet") ? true : undefined));
    const sent = await fetch(`${executorUrl}/api/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "greet/requested", data: { name: "Ada", times: 2 } }),
    });
    expect(sent.status).toBe(200);
    const { ids } = (await sent.json()) as { ids: string[] };
    const run = await until("the run's end", async () => {
      const { runs } = (await (await fetch(`${executorUrl}/api/events/${ids[0]}/runs`)).json()) as { runs: { id: string; status: string }[] };
      const ended = runs.find((candidate) => candidate.status !== "queued" && candidate.status !== "running" && candidate.status !== "sleeping");
      return ended ? (await (await fetch(`${executorUrl}/api/runs/${ended.id}`)).json()) as { status: string; output: unknown; steps: { id: string }[] } : undefined;
    });
    expect(run.status, logs.join("")).toBe("completed");
    expect(run.output).toEqual({ shouted: "HELLO ADA HELLO ADA" });
  }, 120_000);

  it("bundles the app as a Worker with wrangler, free of Node built-ins", async () => {
    // No nodejs_compat in the fixture's wrangler.toml: a Node built-in in the SDK fails the bundle.
    await inApp(app, process.execPath, [WRANGLER, "deploy", "--dry-run", "--outdir", "build/worker"]);
    const bundle = readFileSync(join(app, "build/worker/worker.js"), "utf8");
    expect(bundle).toContain("installed");
    expect(bundle).not.toMatch(/from\s*["']node:/);
  });

  it("bundles a Lambda handler with esbuild, and the bundle answers an API Gateway event", async () => {
    await inApp(app, ESBUILD, ["src/lambda.ts", "--bundle", "--platform=node", "--format=esm", "--outfile=build/lambda/handler.mjs"]);
    const event = {
      version: "2.0",
      rawPath: "/api/durable",
      rawQueryString: "",
      headers: { host: "example.com", "x-forwarded-proto": "https" },
      requestContext: { domainName: "example.com", http: { method: "GET" } },
      isBase64Encoded: false,
    };
    const script = `const { handler } = await import("./build/lambda/handler.mjs"); console.log(JSON.stringify(await handler(${JSON.stringify(event)}, {})));`;
    const answer = JSON.parse((await inApp(app, process.execPath, ["--input-type=module", "-e", script])).trim()) as { statusCode: number; body: string };
    expect(answer.statusCode).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ appId: "installed", functionCount: 1 });
  });
});
