/**
 * A rate limit decided by transactions that overlap, on real PostgreSQL (PGlite has one
 * connection: its transactions never overlap). One that began first but reached the key's row
 * second must judge the limit by the time it got there, not by when it began.
 */
import type { PostgresStore } from "@stepwise/store-postgres";
import { describe, expect, it } from "vitest";
import { postgresAvailable } from "../../../test/support/postgres.ts";
import { suiteDatabase } from "../../../test/support/suite-database.ts";

describe.runIf(postgresAvailable)("rateLimit under overlapping transactions (real PostgreSQL)", () => {
  const suite = suiteDatabase("rlclock");

  it("starts the second of two runs a limit of 2 allows, whichever transaction began first", async () => {
    // 2 per minute: an interval of 30 s, and 30 s of tolerance.
    const take = (tx: Parameters<Parameters<PostgresStore["transaction"]>[0]>[0]) => tx.takeRateLimit("app-rl", "k", 30_000, 30_000);
    let first!: () => void;
    const firstDone = new Promise<void>((resolve) => (first = resolve));
    // The later taker begins (its now() is fixed), then waits while another takes and commits.
    const later = suite.store.transaction(async (tx) => {
      await tx.getEvent("none");
      await firstDone;
      await new Promise((resolve) => setTimeout(resolve, 50));
      return take(tx);
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await suite.store.transaction(take)).toBe(true);
    first();
    expect(await later).toBe(true);
    expect(await suite.store.transaction(take)).toBe(false);
  });
});
