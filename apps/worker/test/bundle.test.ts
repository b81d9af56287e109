/**
 * The executor Worker's bundle must hold only what a Worker can run: bundled as wrangler does
 * (esbuild, Worker conditions), it may reach no Node built-in and none of the Node-only store
 * drivers (PGlite, `pg`, `ws`) that the main @stepwise/store-postgres entry carries.
 */
import { builtinModules } from "node:module";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";
import { expect, it } from "vitest";

const ENTRY = fileURLToPath(new URL("../src/index.ts", import.meta.url));
const NODE_BUILTINS = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));
const NODE_ONLY_PACKAGES = ["@electric-sql/pglite", "pg", "pg-pool", "ws"];

/** Records imports of Node built-ins instead of failing on the first. */
function recordNodeBuiltins(found: string[]): Plugin {
  return {
    name: "record-node-builtins",
    setup(build) {
      build.onResolve({ filter: /.*/ }, (args) => {
        if (!NODE_BUILTINS.has(args.path) && !NODE_BUILTINS.has(args.path.split("/")[0]!)) return undefined;
        found.push(`${args.path} (imported by ${args.importer})`);
        return { path: args.path, external: true };
      });
    },
  };
}

it("bundles for Workers without Node built-ins, PGlite, pg or ws", async () => {
  const builtins: string[] = [];
  const result = await build({
    entryPoints: [ENTRY],
    bundle: true,
    write: false,
    metafile: true,
    platform: "neutral",
    format: "esm",
    mainFields: ["module", "main"],
    conditions: ["workerd", "worker", "browser", "import"],
    logLevel: "silent",
    plugins: [recordNodeBuiltins(builtins)],
  });
  const packages = new Set(
    Object.keys(result.metafile.inputs).flatMap((path) => {
      const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path);
      return match ? [match[1]!] : [];
    }),
  );
  expect(builtins).toEqual([]);
  expect(NODE_ONLY_PACKAGES.filter((name) => packages.has(name))).toEqual([]);
  // What it does need, so the check above cannot pass by bundling nothing.
  expect([...packages]).toEqual(expect.arrayContaining(["@neondatabase/serverless", "@upstash/redis", "hono"]));
}, 30_000);

it("wrangler itself bundles the executor Worker with no Node built-in", async () => {
  const { execFile } = await import("node:child_process");
  const { mkdtempSync, readdirSync, readFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const root = fileURLToPath(new URL("../../../", import.meta.url));
  const outdir = mkdtempSync(join(tmpdir(), "stepwise-worker-bundle-"));
  try {
    // A dry run builds exactly what `wrangler deploy` would upload, without uploading it. Without
    // the nodejs_compat flag (wrangler.toml sets none), a Node built-in fails the build.
    await new Promise<void>((resolve, reject) =>
      execFile(
        process.execPath,
        [join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir],
        { cwd: root, env: { ...process.env, WRANGLER_SEND_METRICS: "false" }, timeout: 90_000 },
        (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stdout}\n${stderr}`)) : resolve()),
      ),
    );
    const bundle = readdirSync(outdir)
      .filter((file) => file.endsWith(".js"))
      .map((file) => readFileSync(join(outdir, file), "utf8"))
      .join("\n");
    expect(bundle.length).toBeGreaterThan(10_000);
    expect(bundle.match(/from\s*["']node:[\w/]+["']|require\(["']node:[\w/]+["']\)/g) ?? []).toEqual([]);
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}, 120_000);
