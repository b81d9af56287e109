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
