/** Review: PGlite's named statements against the guards its unnamed queries have. */
import { expect, it } from "vitest";
import { createPgliteClient } from "../src/drivers/pglite.ts";
import type { SqlExecutor } from "../src/sql.ts";

it("a tx executor used after its transaction ended is refused, named or not", async () => {
  const db = createPgliteClient();
  await db.exec("CREATE TABLE t (name text)");
  let leaked: SqlExecutor | undefined;
  await db.transaction(async (tx) => void (leaked = tx));
  await expect(leaked!.query("INSERT INTO t VALUES ($1)", ["unnamed"])).rejects.toThrow(/closed/i);
  // Another task's transaction is open when the leaked executor runs a named statement.
  const other = db.transaction(async (tx) => {
    await tx.query("INSERT INTO t VALUES ('other')");
    await new Promise((r) => setTimeout(r, 50));
    throw new Error("other task rolls back");
  });
  await new Promise((r) => setTimeout(r, 10));
  const named = leaked!.query<{ seen: number }>("INSERT INTO t VALUES ($1) RETURNING (SELECT count(*)::int FROM t) AS seen", ["named"], { prepare: "leak" });
  const outcome = await named.then((rows) => `ran, and saw ${rows[0]!.seen} uncommitted row(s) of the other task`, (e: Error) => `refused: ${e.message}`);
  await other.catch(() => {});
  const rows = await db.query("SELECT name FROM t");
  console.log("leaked named statement:", outcome, "| rows after the other task rolled back:", JSON.stringify(rows));
  await db.close();
  expect(outcome).toMatch(/^refused/);
});

it("a named statement on a closed client fails as an unnamed one does", async () => {
  const db = createPgliteClient();
  await db.query("SELECT 1 AS one", [], { prepare: "one" });
  await db.close();
  await expect(db.query("SELECT 1 AS one")).rejects.toThrow(/closed/i);
  await expect(db.query("SELECT 1 AS one", [], { prepare: "one" })).rejects.toThrow(/closed/i);
});
