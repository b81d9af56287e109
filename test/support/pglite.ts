/**
 * PGlite stores for the suites, each a fresh database started from one made once. A PGlite
 * started empty runs `initdb`, then the store applies its schema: about 1.5 s and 2.4 s of CPU
 * on this project's machine, dozens of times in a test run. Started from a dump of a database
 * that already holds the schema, it takes about a quarter of that. The dump is kept in the
 * system's temp folder, named after PGlite's version and the schema, so the suites' processes
 * make it once between them (each writes its own and renames it into place: no torn reads).
 */
import { createHash } from "node:crypto";
import { readFile, rename, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createPgliteClient, PostgresStore, SCHEMA_SQL, type PgliteClient, type PgliteClientOptions } from "@stepwise/store-postgres";

let template: Promise<Blob> | undefined;

/** A new, empty PGlite database with the store's schema applied. */
export async function freshPglite(options: Omit<PgliteClientOptions, "dataDir" | "loadDataDir"> = {}): Promise<PgliteClient> {
  template ??= loadTemplate();
  return createPgliteClient({ ...options, loadDataDir: await template });
}

async function loadTemplate(): Promise<Blob> {
  const file = join(tmpdir(), `stepwise-test-pglite-${await templateKey()}.tar`);
  const kept = await readFile(file).catch(() => null);
  if (kept) return new Blob([kept]);
  const client = createPgliteClient();
  await new PostgresStore(client).migrate();
  const dump = await client.dumpDataDir();
  await client.close();
  const bytes = Buffer.from(await dump.arrayBuffer());
  const partial = `${file}.${process.pid}`;
  await writeFile(partial, bytes);
  await rename(partial, file);
  return new Blob([bytes]);
}

/** PGlite's version (its data folder's format) and the schema's text. */
async function templateKey(): Promise<string> {
  // The package's exports hide its package.json; its entry point sits in dist/ under the root.
  const entry = fileURLToPath(import.meta.resolve("@electric-sql/pglite"));
  const manifest = await readFile(join(dirname(entry), "..", "package.json"), "utf8");
  const { version } = JSON.parse(manifest) as { version: string };
  return createHash("sha256").update(`${version}\n${SCHEMA_SQL}`).digest("hex").slice(0, 16);
}
