// Embeds schema.sql into a TS module, so bundles (the Worker) carry the schema without a file system.
// Run `npm run gen:schema` after editing schema.sql; a test fails while the two differ.
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const sql = readFileSync(`${root}/schema.sql`, "utf8");
const out = `// Generated from schema.sql by \`npm run gen:schema\`. Do not edit.\nexport const SCHEMA_SQL = ${JSON.stringify(sql)};\n`;
writeFileSync(`${root}/packages/store-postgres/src/schema.ts`, out);
console.log("wrote packages/store-postgres/src/schema.ts");
