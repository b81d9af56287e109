// `npm run build`: every published package as a directory ready for `npm publish` or `npm pack`,
// in dist/<folder>/: compiled ESM JavaScript, declarations, source maps, package.json, LICENSE.
//
// In the repository a package's `exports` point at its TypeScript source, so tests, tsx and
// wrangler need no build step. The package a user installs must not: its package.json is written
// here with every `./src/x.ts` entry mapped to `./x.js` and `./x.d.ts`. One `tsc` program compiles
// all packages (tsconfig.build.json); a package imports another by its name, which resolves in a
// user's node_modules to that package's compiled entry.
//
// `npm run build -- --pack` also packs each directory into dist/tarballs/; `--out DIR` writes to
// DIR instead of dist/ (the test of the installed packages builds into its own folder). `--link`
// links each built package into DIR/node_modules/@stepwise/, so the compiled code runs in place
// (`node dist/server/bin.js`) with other dependencies from the repository's node_modules: the
// benchmark runs the executor that way, as a user's install runs it.
import { execFileSync } from "node:child_process";
import { builtinModules } from "node:module";
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The published packages, by folder. Their order is irrelevant: tsc compiles them as one. */
export const PUBLISHED = [
  "packages/protocol",
  "packages/sdk",
  "packages/engine",
  "packages/store-postgres",
  "packages/queue-redis",
  "packages/dashboard",
  "packages/api",
  "apps/server",
];

/**
 * Entries that a Worker gets in place of the Node one (the `workerd` and `worker` conditions):
 * the store's root entry bundles PGlite and `pg`, its edge entry only the Neon driver.
 */
const WORKER_ENTRIES = { "@stepwise/store-postgres": { ".": "./src/edge.ts" } };

/** Bins: the command's name and its compiled module (src/bin.ts), run by plain Node. */
const BINS = { "@stepwise/server": { stepwise: "./src/bin.ts" } };

const rootManifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

export function build({ pack = false, link = false, out = join(root, "dist") } = {}) {
  rmSync(out, { recursive: true, force: true });
  const started = Date.now();
  const compiled = join(out, ".tsc");
  const tsc = join(root, "node_modules/typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", compiled], { stdio: "inherit" });
  const built = PUBLISHED.map((folder) => assemble(folder, compiled, out));
  let tarballs = [];
  if (pack) {
    const tarballDir = join(out, "tarballs");
    mkdirSync(tarballDir, { recursive: true });
    tarballs = built.map(({ dir }) => {
      const output = execFileSync("npm", ["pack", "--silent", "--pack-destination", tarballDir], { cwd: dir, encoding: "utf8" });
      return join(tarballDir, output.trim().split("\n").pop());
    });
  }
  if (link) {
    const scope = join(out, "node_modules/@stepwise");
    mkdirSync(scope, { recursive: true });
    for (const { name, dir } of built) symlinkSync(relative(scope, dir), join(scope, name.slice("@stepwise/".length)), "dir");
  }
  rmSync(compiled, { recursive: true, force: true });
  console.log(`built ${built.map(({ name }) => name).join(", ")} in ${((Date.now() - started) / 1000).toFixed(1)} s → ${out}`);
  if (pack) console.log(`packed ${tarballs.length} tarballs → ${join(out, "tarballs")}`);
  return { packages: built, tarballs };
}

function assemble(folder, compiled, out) {
  const source = JSON.parse(readFileSync(join(root, folder, "package.json"), "utf8"));
  const from = join(compiled, folder, "src");
  const dir = join(out, folder.split("/").pop());
  cpSync(from, dir, { recursive: true });
  for (const file of walk(dir)) {
    if (file.endsWith(".d.ts")) rewriteDeclarationImports(file);
    if (file.endsWith(".js.map")) relocateSourceMap(file, dir, folder);
  }

  const dependencies = source.dependencies ?? {};
  checkImports(source, dir);

  const manifest = {
    name: source.name,
    version: source.version,
    description: source.description,
    license: rootManifest.license,
    repository: { ...rootManifest.repository, directory: folder },
    type: "module",
    engines: rootManifest.engines,
    exports: exportsFor(source),
    ...(BINS[source.name] ? { bin: mapValues(BINS[source.name], (entry) => compiledPath(entry, ".js")) } : {}),
    files: ["**/*.js", "**/*.d.ts", "**/*.map"],
    dependencies,
    ...(source.peerDependencies ? { peerDependencies: source.peerDependencies } : {}),
    ...(source.peerDependenciesMeta ? { peerDependenciesMeta: source.peerDependenciesMeta } : {}),
  };
  writeFileSync(join(dir, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  cpSync(join(root, "LICENSE"), join(dir, "LICENSE"));
  writeFileSync(
    join(dir, "README.md"),
    `# ${source.name}\n\n${source.description}.\n\nPart of Stepwise, durable execution for TypeScript: see the project's README for the guide.\n`,
  );
  return { name: source.name, dir };
}

/** `./src/x.ts` → `{ types: "./x.d.ts", default: "./x.js" }`, with a Worker's entry where it differs. */
function exportsFor(source) {
  const entries = typeof source.exports === "string" ? { ".": source.exports } : source.exports;
  const worker = WORKER_ENTRIES[source.name] ?? {};
  return mapValues(entries, (entry, subpath) => {
    const node = { types: compiledPath(entry, ".d.ts"), default: compiledPath(entry, ".js") };
    if (!worker[subpath]) return node;
    const edge = { types: compiledPath(worker[subpath], ".d.ts"), default: compiledPath(worker[subpath], ".js") };
    return { workerd: edge, worker: edge, ...node };
  });
}

function compiledPath(entry, extension) {
  if (!entry.startsWith("./src/") || !entry.endsWith(".ts")) throw new Error(`build: entry ${entry} is not a TypeScript file under ./src/`);
  return `./${entry.slice("./src/".length, -".ts".length)}${extension}`;
}

/**
 * tsc rewrites `./x.ts` to `./x.js` in JavaScript but not in declarations. TypeScript 5 reads
 * either; older TypeScript and tools that read declarations by themselves expect `.js`, the
 * name of the file that exists. Same length, so the declaration maps stay exact.
 */
function rewriteDeclarationImports(file) {
  const text = readFileSync(file, "utf8");
  const rewritten = text.replace(/((?:from|import)\s*\(?\s*["'])(\.{1,2}\/[^"']*)\.ts(["'])/g, "$1$2.js$3");
  if (rewritten !== text) writeFileSync(file, rewritten);
}

/**
 * A map's `sources` as tsc wrote them lead from dist/.tsc to this checkout (a path on the
 * builder's machine); they are rewritten to where the source lies in the repository, relative
 * to the package (`src/x.ts`). The text itself is inlined (`sourcesContent`).
 */
function relocateSourceMap(file, dir, folder) {
  const map = JSON.parse(readFileSync(file, "utf8"));
  const compiledFrom = relative(dir, dirname(file));
  map.sources = map.sources.map((source) => {
    const name = source.split("/").pop();
    return relative(dirname(file), join(dir, "src", compiledFrom, name)).split("\\").join("/");
  });
  map.sourceRoot = "";
  writeFileSync(file, JSON.stringify(map));
}

/**
 * Every bare import of the compiled code and its declarations must be a declared dependency,
 * or a user's install breaks. An optional peer (hono) may be imported only by the entry made
 * for it (`adapters/hono.*`): anywhere else it would break every user without it.
 */
function checkImports(source, dir) {
  const { name } = source;
  const optional = new Set(Object.entries(source.peerDependenciesMeta ?? {}).filter(([, meta]) => meta.optional).map(([peer]) => peer));
  const declared = { ...source.dependencies, ...source.peerDependencies };
  const builtins = new Set(builtinModules);
  const missing = new Set();
  for (const file of walk(dir)) {
    if (!file.endsWith(".js") && !file.endsWith(".d.ts")) continue;
    const text = readFileSync(file, "utf8");
    for (const match of text.matchAll(/^\s*(?:(?:import|export)\b[^;"'=]*?\bfrom|import)\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/gm)) {
      const specifier = match[1] ?? match[2];
      if (!specifier || specifier.startsWith(".") || specifier.startsWith("node:") || builtins.has(specifier)) continue;
      const parts = specifier.split("/");
      const pkg = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
      const entryFor = (peer) => relative(dir, file).replace(/\.(js|d\.ts)$/, "") === `adapters/${peer}`;
      if (!(pkg in declared) || (optional.has(pkg) && !entryFor(pkg))) missing.add(`${pkg} (${relative(dir, file)})`);
    }
  }
  if (missing.size) throw new Error(`build: ${name} imports packages it does not declare (or optional peers outside their own entry): ${[...missing].join(", ")}`);
}

function* walk(dir) {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) yield* walk(path);
    else yield path;
  }
}

function mapValues(object, fn) {
  return Object.fromEntries(Object.entries(object).map(([key, value]) => [key, fn(value, key)]));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (!existsSync(join(root, "node_modules/typescript"))) throw new Error("build: run npm install first");
  const outIndex = process.argv.indexOf("--out");
  build({ pack: process.argv.includes("--pack"), link: process.argv.includes("--link"), ...(outIndex > 0 ? { out: resolve(process.argv[outIndex + 1]) } : {}) });
}
