/**
 * The driver parity suite (`./driver-suite.ts`) on the remaining drivers, against the real
 * PostgreSQL: `pg` over plain TCP, and the Neon driver with `query()` over Neon's SQL-over-HTTP
 * protocol (through the neon-http dev bridge) while `transaction()`/`exec()` stay on the
 * WebSocket (ws-tcp bridge). Then: all drivers agree value for value, and the HTTP path is
 * really taken, per client, without disturbing other users of the driver's global config.
 */
import { neon, neonConfig } from "@neondatabase/serverless";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNeonHttpBridge, type NeonHttpBridge } from "@stepwise/dev-bridges";
import { startWsTcpBridge, type WsTcpBridge } from "../../dev-bridges/src/index.ts";
import {
  TransactionAbortedError,
  createNeonClient,
  createPgClient,
  createPgliteClient,
  type NeonHttpOptions,
} from "../src/drivers/index.ts";
import type { SqlClient } from "../src/sql.ts";
import { PG_URL, TYPES_SQL, driverSuite, probePostgres, requirePostgres, type Driver } from "./driver-suite.ts";

const { pgUp, runReal } = await probePostgres("drivers-more.test", "the pg and Neon-HTTP driver suites");

let wsBridge: WsTcpBridge | undefined;
let httpBridge: NeonHttpBridge | undefined;
async function bridges(): Promise<{ ws: WsTcpBridge; http: NeonHttpBridge }> {
  requirePostgres(pgUp);
  wsBridge ??= await startWsTcpBridge();
  httpBridge ??= await startNeonHttpBridge();
  return { ws: wsBridge, http: httpBridge };
}

const asDriver = (client: SqlClient): Driver => ({ client, stop: () => client.close() });

async function openPg(): Promise<Driver> {
  requirePostgres(pgUp);
  return asDriver(createPgClient({ connectionString: PG_URL, max: 8 }));
}

async function openNeonHttp(http?: Omit<NeonHttpOptions, "fetchEndpoint">): Promise<Driver> {
  const b = await bridges();
  return asDriver(
    createNeonClient({ connectionString: PG_URL, wsProxy: b.ws.wsProxy, max: 8, http: { ...http, fetchEndpoint: b.http.fetchEndpoint } }),
  );
}

async function openNeonWs(): Promise<Driver> {
  const b = await bridges();
  return asDriver(createNeonClient({ connectionString: PG_URL, wsProxy: b.ws.wsProxy, max: 8 }));
}

describe.skipIf(!runReal)("real PostgreSQL, more drivers", () => {
  afterAll(async () => {
    await Promise.all([wsBridge?.close(), httpBridge?.close()]);
  });

  driverSuite("pg driver over TCP", openPg, {
    real: true,
    openSingle: (onError, idleTimeoutMs) => createPgClient({ connectionString: PG_URL, max: 1, onError, idleTimeoutMs }),
  });

  driverSuite("Neon driver, query() over HTTP through the neon-http bridge", () => openNeonHttp(), {
    real: true,
    openSingle: (onError, idleTimeoutMs) =>
      createNeonClient({
        connectionString: PG_URL,
        wsProxy: wsBridge!.wsProxy,
        max: 1,
        onError,
        idleTimeoutMs,
        http: { fetchEndpoint: httpBridge!.fetchEndpoint },
      }),
  });

  describe("all drivers agree", () => {
    let drivers: Record<string, Driver>;
    beforeAll(async () => {
      const [pglite, neonWs, neonHttp, pg] = await Promise.all([
        asDriver(createPgliteClient()),
        openNeonWs(),
        openNeonHttp(),
        openPg(),
      ]);
      drivers = { pglite, neonWs, neonHttp, pg };
      // Let PGlite finish starting first: compiling its WebAssembly stalls this process's event
      // loop for seconds, which should not overlap the HTTP requests under comparison.
      await pglite.client.query("SELECT 1");
    }, 60_000);
    afterAll(async () => {
      if (drivers) await Promise.all(Object.values(drivers).map((d) => d.stop()));
    });

    async function same(sql: string, params: unknown[], names: string[]) {
      const results = await Promise.all(names.map((n) => drivers[n]!.client.query(sql, params)));
      for (const [i, r] of results.entries()) expect(r, `${names[i]} vs ${names[0]}: ${sql}`).toEqual(results[0]);
      return results[0]!;
    }

    it("on the promised types and simple results", async () => {
      const all = ["pglite", "neonWs", "neonHttp", "pg"];
      for (const sql of [TYPES_SQL, "SELECT x, x * 2 AS y FROM generate_series(1, 3) AS x", "SELECT '{}'::jsonb AS e"]) {
        await same(sql, [], all);
      }
      // Statements that return no rows, and parameters of every kind we pass.
      expect(await same("SELECT 1 AS one WHERE false", [], all)).toEqual([]);
      const row = await same(
        "SELECT $1::int8 AS big, $2::jsonb AS doc, $3::timestamptz AS at, $4::text AS nul, $5::bool AS yes, $6::float8 AS f",
        [9007199254740993n, JSON.stringify({ a: [1, "é"] }), new Date("2023-06-01T08:09:10.123Z"), null, true, 0.5],
        all,
      );
      expect(row).toEqual([
        { big: "9007199254740993", doc: { a: [1, "é"] }, at: new Date("2023-06-01T08:09:10.123Z"), nul: null, yes: true, f: 0.5 },
      ]);
    });

    it("on types beyond the promised ones (the three node-postgres-based drivers)", async () => {
      // The HTTP path parses Postgres text with the same parsers as the wire protocol; these
      // pin that beyond the store's needs. PGlite is left out: it differs on bytea (plain
      // Uint8Array) and some exotic types, which the store does not use.
      const row = await same(
        `SELECT '\\x00ff10'::bytea AS by, $1::bytea AS byp, ARRAY['a"b', NULL, 'c,d']::text[] AS ta,
          ARRAY[true, false]::bool[] AS ba, ARRAY[1.5, 2]::float8[] AS fa, 'NaN'::float8 AS nan,
          '2024-01-02 03:04:05.678'::timestamp AS ts, '1 day 02:00'::interval AS iv,
          'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id, 'null'::jsonb AS jnull, '"s"'::jsonb AS jstr,
          ARRAY['{"k":1}'::jsonb] AS jarr, E'tab\\there \\u00e9 \\U0001F600' AS uni, 123456789.123456789::numeric AS num`,
        [Buffer.from([1, 2, 3])],
        ["neonWs", "neonHttp", "pg"],
      );
      const r = row[0] as Record<string, unknown>;
      expect(r.by).toBeInstanceOf(Uint8Array);
      expect([...(r.by as Uint8Array)]).toEqual([0, 255, 16]);
      expect([...(r.byp as Uint8Array)]).toEqual([1, 2, 3]);
      expect(r.ta).toEqual(['a"b', null, "c,d"]);
      expect(r.nan).toBeNaN();
      expect(r.jnull).toBeNull();
      expect(r.jstr).toBe("s");
      expect(r.jarr).toEqual([{ k: 1 }]);
      expect(r.uni).toBe("tab\there é 😀");
      expect(r.num).toBe("123456789.123456789");
    });

    it("on errors: the same SQLSTATE code from each", async () => {
      for (const [sql, code] of [["SELECT 1/0", "22012"], ["SELECT * FROM no_such_table", "42P01"], ["SELEC 1", "42601"]] as const) {
        for (const [name, d] of Object.entries(drivers)) {
          await expect(d.client.query(sql), name).rejects.toMatchObject({ code });
        }
      }
    });
  });

  describe("the Neon HTTP path", () => {
    it("sends query() over HTTP and transaction()/exec() over the WebSocket", async () => {
      const urls: string[] = [];
      const { client, stop } = await openNeonHttp({
        fetchFunction: (url, init) => (urls.push(url), fetch(url, init)),
      });
      try {
        await client.exec("SELECT 1; SELECT 2");
        await client.transaction((tx) => tx.query("SELECT 1"));
        expect(urls).toEqual([]);
        expect(await client.query("SELECT $1::int4 AS n", [7])).toEqual([{ n: 7 }]);
        expect(urls).toEqual([httpBridge!.fetchEndpoint("127.0.0.1", 5432)]);
        // One statement per request, as on Neon: a multi-statement query() is refused.
        await expect(client.query("SELECT 1; SELECT 2")).rejects.toMatchObject({ code: "42601" });
      } finally {
        await stop();
      }
      await expect(client.query("SELECT 1")).rejects.toThrow(/closed/);
    });

    it("accepts a fixed endpoint URL and throws TransactionAbortedError like the others", async () => {
      const b = await bridges();
      const client = createNeonClient({ connectionString: PG_URL, wsProxy: b.ws.wsProxy, http: { fetchEndpoint: `${b.http.url}/sql` } });
      try {
        expect(await client.query("SELECT 'ok' AS s")).toEqual([{ s: "ok" }]);
        const aborted = client.transaction(async (tx) => {
          await tx.query("SELECT 1/0").catch(() => undefined);
        });
        await expect(aborted).rejects.toBeInstanceOf(TransactionAbortedError);
      } finally {
        await client.close();
      }
    });

    it("leaves other users of neonConfig alone: their fetchFunction and endpoint still apply", async () => {
      const b = await bridges();
      const before = { fetchFunction: neonConfig.fetchFunction, fetchEndpoint: neonConfig.fetchEndpoint };
      const seen: string[] = [];
      // Someone else in the process configures the driver globally for their own neon() use.
      neonConfig.fetchEndpoint = (host, port) => `${b.http.url}/sql?theirs=${host}:${port}`;
      neonConfig.fetchFunction = (url: string, init: RequestInit) => (seen.push(url), fetch(url, init));
      const ours = createNeonClient({ connectionString: PG_URL, wsProxy: b.ws.wsProxy, http: { fetchEndpoint: b.http.fetchEndpoint } });
      try {
        expect(await ours.query("SELECT 1 AS a")).toEqual([{ a: 1 }]);
        const theirs = neon(PG_URL);
        expect(await theirs.query("SELECT 2 AS b")).toEqual([{ b: 2 }]);
        // Their fetch saw both requests (ours without our own fetchFunction goes through it),
        // ours to our endpoint, theirs to their global endpoint.
        expect(seen).toEqual([`${b.http.url}/sql`, `${b.http.url}/sql?theirs=127.0.0.1:5432`]);
      } finally {
        await ours.close();
        neonConfig.fetchFunction = before.fetchFunction;
        neonConfig.fetchEndpoint = before.fetchEndpoint;
      }
    });
  });
});
