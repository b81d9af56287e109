// Bundles the dashboard's pages (packages/dashboard/ui) into a TS module of strings, so the
// executor serves them from memory on Node and on Workers alike, with no CDN and no file system.
// Run `npm run gen:dashboard` after editing the pages; a test fails while the two differ.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const ui = `${root}/packages/dashboard/ui`;

/** The module's text, from the pages as they are now. */
export async function dashboardAssets() {
  const bundle = await build({
    entryPoints: [`${ui}/main.ts`],
    bundle: true,
    format: "esm",
    target: "es2022",
    minify: true,
    write: false,
    legalComments: "none",
    logLevel: "silent",
  });
  const js = bundle.outputFiles[0].text;
  const css = readFileSync(`${ui}/style.css`, "utf8");
  const version = createHash("sha256").update(js).update(css).digest("hex").slice(0, 16);
  return (
    "// Generated from packages/dashboard/ui by `npm run gen:dashboard`. Do not edit.\n" +
    `export const DASHBOARD_VERSION = ${JSON.stringify(version)};\n` +
    `export const DASHBOARD_JS = ${JSON.stringify(js)};\n` +
    `export const DASHBOARD_CSS = ${JSON.stringify(css)};\n`
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(`${root}/packages/dashboard/src/assets.ts`, await dashboardAssets());
  console.log("wrote packages/dashboard/src/assets.ts");
}
