/**
 * The driver parity suite (`./driver-suite.ts`) on PGlite (in memory) and on the real PostgreSQL
 * reached through the Neon driver and the ws-tcp dev bridge. `drivers-more.test.ts` runs it on
 * the other drivers.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startWsTcpBridge, type WsTcpBridge } from "../../dev-bridges/src/index.ts";
import { createNeonClient, createPgliteClient } from "../src/drivers/index.ts";
import { PG_URL, TYPES_SQL, driverSuite, probePostgres, requirePostgres, type Driver } from "./driver-suite.ts";

const { pgUp, runReal } = await probePostgres("drivers.test", "the Neon-driver suite");

async function openPglite(): Promise<Driver> {
  const client = createPgliteClient();
  return { client, stop: () => client.close() };
}

let bridge: WsTcpBridge | undefined;
async function openNeon(): Promise<Driver> {
  requirePostgres(pgUp);
  bridge ??= await startWsTcpBridge();
  const client = createNeonClient({ connectionString: PG_URL, wsProxy: bridge.wsProxy, max: 8 });
  return { client, stop: () => client.close() };
}

driverSuite("PGlite driver (in memory)", openPglite, { real: false });
describe.skipIf(!runReal)("real PostgreSQL", () => {
  afterAll(async () => {
    await bridge?.close();
  });
  driverSuite("Neon driver through the ws-tcp bridge", openNeon, {
    real: true,
    openSingle: (onError, idleTimeoutMs) => createNeonClient({ connectionString: PG_URL, wsProxy: bridge!.wsProxy, max: 1, onError, idleTimeoutMs }),
  });

  it("both drivers return identical results for identical queries", async () => {
    const [p, n] = await Promise.all([openPglite(), openNeon()]);
    try {
      for (const sql of [TYPES_SQL, "SELECT x, x * 2 AS y FROM generate_series(1, 3) AS x", "SELECT '{}'::jsonb AS e"]) {
        const [a, b] = await Promise.all([p.client.query(sql), n.client.query(sql)]);
        expect(a).toEqual(b);
      }
    } finally {
      await Promise.all([p.stop(), n.stop()]);
    }
  }, 60_000);
});

describe("PGlite driver, closed", () => {
  it("refuses a named statement as it refuses an unnamed one", async () => {
    const client = createPgliteClient();
    await client.query("SELECT 1 AS one", [], { prepare: "warm" });
    await client.close();
    const unnamed = await client.query("SELECT 1").then(() => "ran", (error: Error) => error.message);
    const named = await client.query("SELECT 1 AS one", [], { prepare: "warm" }).then(() => "ran", (error: Error) => error.message);
    expect(unnamed).toMatch(/closed/i);
    expect(named).toBe(unnamed);
  });
});

describe("PGlite driver (dataDir)", () => {
  it("persists to its folder across close and reopen", async () => {
    const dir = await mkdtemp(join(tmpdir(), "stepwise-pglite-"));
    try {
      const first = createPgliteClient({ dataDir: dir });
      await first.exec("CREATE TABLE kept (v jsonb); INSERT INTO kept VALUES ('{\"a\":1}')");
      await first.close();
      const second = createPgliteClient({ dataDir: dir });
      expect(await second.query("SELECT v FROM kept")).toEqual([{ v: { a: 1 } }]);
      await second.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
