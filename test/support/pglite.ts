/**
 * PGlite stores for the suites, each a fresh database started from one made once. A PGlite
 * started empty runs `initdb`, then the store applies its schema: about 1.5 s and 2.4 s of CPU
 * on this project's machine, dozens of times in a test run. Started from a dump of a database
 * that already holds the schema, it takes about a quarter of that. The dump is kept in the
 * system's temp folder, named after PGlite's version and the schema, so the suites' processes
 * make it once between them: each writes its own, flushed to disk, and renames it into place. A
 * dump PGlite cannot start from (cut short by a crash) is made again, and dumps of other keys
 * (an older schema) are deleted.
 */
import { createHash, randomUUID } from "node:crypto";
import { open, readdir, readFile, rename, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createPgliteClient, PostgresStore, SCHEMA_SQL, type PgliteClient, type PgliteClientOptions } from "@stepwise/store-postgres";

const PREFIX = "stepwise-test-pglite-";
let template: Promise<Blob> | undefined;

/** A new, empty PGlite database with the store's schema applied. */
export async function freshPglite(options: Omit<PgliteClientOptions, "dataDir" | "loadDataDir"> = {}): Promise<PgliteClient> {
  template ??= loadTemplate(false);
  const client = createPgliteClient({ ...options, loadDataDir: await template });
  try {
    // PGlite starts in the background: a dump it cannot start from fails the first call.
    await client.query("SELECT 1");
    return client;
  } catch (error) {
    await client.close().catch(() => {});
    template = loadTemplate(true);
    console.warn(`the cached PGlite dump could not be started from (${(error as Error).message}); made it again`);
    return createPgliteClient({ ...options, loadDataDir: await template });
  }
}

async function loadTemplate(remake: boolean): Promise<Blob> {
  const name = `${PREFIX}${await templateKey()}.tar`;
  const file = join(tmpdir(), name);
  const kept = remake ? null : await readFile(file).catch(() => null);
  if (kept && kept.byteLength > 0) return new Blob([kept]);
  const client = createPgliteClient();
  await new PostgresStore(client).migrate();
  const dump = await client.dumpDataDir();
  await client.close();
  const bytes = Buffer.from(await dump.arrayBuffer());
  const partial = `${file}.${randomUUID()}`;
  const handle = await open(partial, "w");
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(partial, file);
  // Dumps of another schema or PGlite: never read again.
  for (const other of await readdir(tmpdir()).catch(() => [])) {
    if (other.startsWith(PREFIX) && other.endsWith(".tar") && other !== name) await unlink(join(tmpdir(), other)).catch(() => {});
  }
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
