/**
 * The keyed claim and the notices of freed slots beside other transactions, on real PostgreSQL
 * (PGlite has one connection: nothing there is held by another).
 */
import { describe, expect, it } from "vitest";
import { postgresAvailable } from "../../../test/support/postgres.ts";
import { suiteDatabase } from "../../../test/support/suite-database.ts";
import { PgQueue } from "../src/queue.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.runIf(postgresAvailable)("keyed claims and freed slots beside other transactions (real PostgreSQL)", () => {
  const suite = suiteDatabase("claimkeyed");

  it("a notice of freed slots locks its keys in order, as a commit queueing jobs of them does: the two never deadlock", async () => {
    // "b" first on disk, so a notice reading the table in its own order would lock it first.
    await suite.sql.query("INSERT INTO concurrency_keys (key, next_at) VALUES ('fn:x:b', now() + interval '1 minute'), ('fn:x:a', now() + interval '1 minute')");
    const writer = suite.db.client();
    let holdingA!: () => void;
    const aHeld = new Promise<void>((resolve) => (holdingA = resolve));
    let goOn!: () => void;
    const wentOn = new Promise<void>((resolve) => (goOn = resolve));
    // A commit that queues jobs of both keys takes their rows in order of key: "a", then "b".
    const commit = writer.transaction(async (tx) => {
      await tx.query("UPDATE concurrency_keys SET next_at = now() + interval '2 minutes' WHERE key = 'fn:x:a'");
      holdingA();
      await wentOn;
      await tx.query("UPDATE concurrency_keys SET next_at = now() + interval '2 minutes' WHERE key = 'fn:x:b'");
    });
    await aHeld;
    const notice = new PgQueue(suite.sql).slotsFreed(["fn:x:b", "fn:x:a"]);
    await sleep(100);
    goOn();
    await Promise.all([commit, notice]);
    // The notice waited for the commit, then made both keys due.
    const rows = await suite.sql.query<{ key: string; due: boolean }>("SELECT key, next_at <= now() AS due FROM concurrency_keys ORDER BY key");
    expect(rows.map((row) => [row.key, row.due])).toEqual([
      ["fn:x:a", true],
      ["fn:x:b", true],
    ]);
    await writer.close();
  });

  it("refuses to claim outside READ COMMITTED, where it could count slots from before its own locks", async () => {
    const error = await suite.sql
      .transaction(async (tx) => {
        await tx.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
        await tx.query("SELECT id FROM stepwise_claim_keyed('worker-a', 10, 30000, 16, 2000, 20)");
      })
      .catch((caught: unknown) => caught);
    expect(String(error)).toMatch(/only under READ COMMITTED, not repeatable read/);
  });
});
