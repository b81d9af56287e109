/**
 * The edge entry points (Workers, Lambda, Next.js Edge, Hono anywhere) must reach only Web APIs:
 * bundle each with esbuild for a neutral platform and fail on any Node built-in it imports,
 * directly or through what it imports (hono and zod included), or any Node-only global it uses.
 */
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type BuildOptions, type Plugin } from "esbuild";
import { describe, expect, it } from "vitest";

// The SDK's main entry too: every app imports it next to its adapter.
const ENTRIES = ["adapters/fetch", "adapters/lambda", "adapters/next", "adapters/hono", "adapters/h3", "adapters/sveltekit", "adapters/astro", "adapters/react-router", "index"].map((name) => fileURLToPath(new URL(`../src/${name}.ts`, import.meta.url)));
const NODE_BUILTINS = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));

/** Records every import of a Node built-in (with its importer) instead of resolving it. */
function rejectNodeBuiltins(found: string[]): Plugin {
  return {
    name: "reject-node-builtins",
    setup(build) {
      build.onResolve({ filter: /.*/ }, (args) => {
        const bare = args.path.split("/")[0]!;
        if (!args.path.startsWith("node:") && !NODE_BUILTINS.has(args.path) && !NODE_BUILTINS.has(bare)) return undefined;
        found.push(`${args.path} (imported by ${args.importer})`);
        return { path: args.path, external: true };
      });
    },
  };
}

/**
 * Node-only globals, renamed by `define` wherever they are free (not declared locally), so a
 * use shows in the output. `process` is left out: env.ts reads `globalThis.process?.env`, guarded.
 */
const NODE_GLOBALS = ["Buffer", "require", "__dirname", "__filename", "setImmediate"];
const MARK = "__node_global__";
const GUARD = new RegExp(`typeof\\s+(${NODE_GLOBALS.join("|")})\\s*(===|!==|==|!=)\\s*(['"])undefined\\3`, "g");

/**
 * Loads every file as it runs where the Node globals are missing: `typeof Buffer !== "undefined"`
 * is false there (the CEL parser guards its use of Buffer so), and with the syntax minified the
 * branch it guards is dropped. A use that no such check guards still shows.
 */
function withoutNodeGlobals(): Plugin {
  return {
    name: "without-node-globals",
    setup(build) {
      build.onLoad({ filter: /\.(c|m)?(j|t)s$/ }, async (args) => {
        const text = await readFile(args.path, "utf8");
        const contents = text.replace(GUARD, (_match, _name, operator: string) => (operator.startsWith("!") ? "false" : "true"));
        return contents === text ? undefined : { contents, loader: args.path.endsWith("ts") ? "ts" : "js" };
      });
    },
  };
}

/** Bundles like wrangler would for a Worker; returns the Node built-ins and globals reached. */
async function nodeApisReached(input: Pick<BuildOptions, "entryPoints" | "stdin">): Promise<string[]> {
  const found: string[] = [];
  const result = await build({
    ...input,
    bundle: true,
    write: false,
    platform: "neutral",
    format: "esm",
    // Neutral has no default main fields or conditions; these are what a Worker bundler resolves.
    mainFields: ["module", "main"],
    conditions: ["workerd", "worker", "browser", "import"],
    define: Object.fromEntries(NODE_GLOBALS.map((name) => [name, `${MARK}${name}`])),
    minifySyntax: true,
    logLevel: "silent",
    plugins: [rejectNodeBuiltins(found), withoutNodeGlobals()],
  });
  expect(result.errors).toEqual([]);
  const text = result.outputFiles![0]!.text;
  for (const name of NODE_GLOBALS) if (text.includes(`${MARK}${name}`)) found.push(`global ${name}`);
  return found;
}

describe("edge entry points", () => {
  it.each(ENTRIES)("%s bundles for a neutral platform without Node APIs", { timeout: 60_000 }, async (entry) => {
    expect(await nodeApisReached({ entryPoints: [entry] })).toEqual([]);
  });

  it("the check catches Node imports and globals", async () => {
    const contents = 'import { createHash } from "node:crypto"; import "fs"; export const x = [createHash, Buffer.from("a")];';
    const found = await nodeApisReached({ stdin: { contents, resolveDir: fileURLToPath(new URL(".", import.meta.url)), loader: "ts" } });
    expect(found).toEqual([expect.stringMatching(/^node:crypto/), expect.stringMatching(/^fs /), "global Buffer"]);
    // A use guarded by `typeof` is fine where the global is missing; the same use unguarded is not.
    const dir = await mkdtemp(join(tmpdir(), "edge-"));
    await writeFile(join(dir, "guarded.js"), 'export const y = typeof Buffer !== "undefined" ? Buffer.from("b") : null;');
    await writeFile(join(dir, "unguarded.js"), 'export const y = typeof Buffer !== "undefined" ? Buffer.from("b") : Buffer.alloc(1);');
    expect(await nodeApisReached({ entryPoints: [join(dir, "guarded.js")] })).toEqual([]);
    expect(await nodeApisReached({ entryPoints: [join(dir, "unguarded.js")] })).toEqual(["global Buffer"]);
    // The Node adapter reads Node's request through its own methods: it imports Node's types only.
    expect(await nodeApisReached({ entryPoints: [fileURLToPath(new URL("../src/adapters/node.ts", import.meta.url))] })).toEqual([]);
  });
});
