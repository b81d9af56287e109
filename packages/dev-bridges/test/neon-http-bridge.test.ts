/**
 * The neon-http bridge against the real driver: `neon()` from @neondatabase/serverless, pointed
 * at the bridge with `neonConfig.fetchEndpoint`, runs on the local PostgreSQL exactly as it
 * would on Neon. Plus the raw protocol (what other clients may send) with plain fetch.
 */
import { connect } from "node:net";
import { NeonDbError, neon, neonConfig } from "@neondatabase/serverless";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNeonHttpBridge, type NeonHttpBridge } from "../src/neon-http-bridge.ts";

const PG_URL = "postgres://postgres@127.0.0.1:5432/test";
const CI = process.env.CI === "true";

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (ok: boolean) => (s.destroy(), resolve(ok));
    s.setTimeout(1500, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}
const pgUp = await reachable("127.0.0.1", 5432);
if (!pgUp && !CI) {
  console.warn("[neon-http-bridge.test] PostgreSQL at 127.0.0.1:5432 is unreachable: SKIPPING the real-Postgres tests (CI=true makes this a failure)");
}

let bridge: NeonHttpBridge;
const saved = { fetchEndpoint: neonConfig.fetchEndpoint };
beforeAll(async () => {
  bridge = await startNeonHttpBridge();
  // neon() only has a process-wide endpoint setting; this test file is its own process.
  neonConfig.fetchEndpoint = bridge.fetchEndpoint;
});
afterAll(async () => {
  neonConfig.fetchEndpoint = saved.fetchEndpoint;
  await bridge?.close();
});

/** POSTs a raw protocol request to the bridge. */
async function post(body: unknown, headers: Record<string, string> = { "Neon-Connection-String": PG_URL }) {
  const res = await fetch(`${bridge.url}/sql`, { method: "POST", headers, body: JSON.stringify(body) });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, any> };
}

describe("neon-http bridge", () => {
  it("exposes the endpoint the driver needs", () => {
    expect(bridge.url).toBe(`http://127.0.0.1:${bridge.port}`);
    expect(bridge.fetchEndpoint("127.0.0.1", 5432)).toBe(`${bridge.url}/sql`);
  });

  it("refuses targets outside allowedTargets, before connecting anywhere", async () => {
    const other = neon("postgres://postgres@127.0.0.1:5433/test");
    await expect(other.query("SELECT 1")).rejects.toThrow(/HTTP status 403.*127\.0\.0\.1:5433 is not allowed/);
    await expect(neon("postgres://u@db.example.com/test").query("SELECT 1")).rejects.toThrow(/not allowed/);
    const strict = await startNeonHttpBridge({ allowedTargets: ["127.0.0.1:6543"] });
    try {
      const res = await fetch(strict.fetchEndpoint("127.0.0.1", 5432), {
        method: "POST",
        headers: { "Neon-Connection-String": PG_URL },
        body: JSON.stringify({ query: "SELECT 1", params: [] }),
      });
      expect(res.status).toBe(403);
    } finally {
      await strict.close();
    }
    await expect(startNeonHttpBridge({ allowedTargets: ["nonsense"] })).rejects.toThrow(/invalid allowed target/);
  });

  it("answers malformed requests with 400 and a message", async () => {
    expect((await post({ query: "SELECT 1" }, {})).status).toBe(400);
    expect((await post({ query: "SELECT 1" }, {})).json.message).toMatch(/Neon-Connection-String/);
    const badIso = await post({ queries: [] }, { "Neon-Connection-String": PG_URL, "Neon-Batch-Isolation-Level": "Chaos" });
    expect(badIso).toMatchObject({ status: 400, json: { message: "invalid isolation level" } });
    expect((await post({ nope: 1 })).status).toBe(400);
    expect((await fetch(`${bridge.url}/sql`)).status).toBe(404);
  });
});

describe.skipIf(!pgUp && !CI)("neon-http bridge on the real PostgreSQL", () => {
  const schema = `nhb_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const T = `${schema}.docs`;
  const sql = neon(PG_URL);

  beforeAll(async () => {
    if (!pgUp) throw new Error("CI=true but PostgreSQL at 127.0.0.1:5432 is unreachable");
    await sql.query(`CREATE SCHEMA ${schema}`);
    await sql.query(`CREATE TABLE ${T} (id serial PRIMARY KEY, name text UNIQUE NOT NULL, doc jsonb, at timestamptz)`);
  });
  afterAll(async () => {
    if (pgUp) await sql.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  });

  it("runs parameterized queries, as tagged templates too", async () => {
    expect(await sql.query("SELECT $1::int4 + $2::int4 AS sum, $3::text AS t, $4::text AS n", [1, 2, "it's", null])).toEqual([
      { sum: 3, t: "it's", n: null },
    ]);
    const who = "o'brien";
    expect(await sql`SELECT ${who}::text AS who, ${41}::int8 + 1 AS big`).toEqual([{ who, big: "42" }]);
  });

  it("round-trips jsonb, as the driver serializes it and as JSON text", async () => {
    const doc = { a: [1, { b: null }], s: "é\"\\", n: 1.5 };
    await sql.query(`INSERT INTO ${T} (name, doc) VALUES ($1, $2), ($3, $4)`, ["obj", doc, "text", JSON.stringify([doc])]);
    const rows = await sql.query(`SELECT name, doc FROM ${T} WHERE name IN ('obj', 'text') ORDER BY name`);
    expect(rows).toEqual([{ name: "obj", doc }, { name: "text", doc: [doc] }]);
  });

  it("round-trips timestamptz as Date", async () => {
    const at = new Date("2024-02-29T23:59:58.123Z");
    await sql.query(`INSERT INTO ${T} (name, at) VALUES ($1, $2)`, ["ts", at]);
    const [row] = await sql.query(`SELECT at, at + interval '1 day' AS next FROM ${T} WHERE name = 'ts'`);
    expect(row!.at).toBeInstanceOf(Date);
    expect(row!.at.getTime()).toBe(at.getTime());
    expect(row!.next.toISOString()).toBe("2024-03-01T23:59:58.123Z");
  });

  it("returns full results: fields with type OIDs, command, rowCount, array mode", async () => {
    const full = neon(PG_URL, { fullResults: true, arrayMode: true });
    const res = await full.query("SELECT 1::int4 AS one, '{}'::jsonb AS j, 'x'::text AS t");
    expect(res.rows).toEqual([[1, {}, "x"]]);
    expect(res.fields.map((f) => [f.name, f.dataTypeID])).toEqual([["one", 23], ["j", 3802], ["t", 25]]);
    expect(res).toMatchObject({ command: "SELECT", rowCount: 1 });
    const upd = await full.query(`UPDATE ${T} SET doc = '1' WHERE name IN ('obj', 'text')`);
    expect(upd).toMatchObject({ command: "UPDATE", rowCount: 2, rows: [] });
    const ddl = await full.query(`CREATE INDEX ON ${T} (at)`);
    expect(ddl).toMatchObject({ command: "CREATE", rowCount: null });
  });

  it("raises database errors as NeonDbError with the SQLSTATE and details", async () => {
    await sql.query(`INSERT INTO ${T} (name) VALUES ('dup')`);
    const dup = await sql.query(`INSERT INTO ${T} (name) VALUES ('dup')`).catch((e: unknown) => e);
    expect(dup).toBeInstanceOf(NeonDbError);
    expect(dup).toMatchObject({ code: "23505", severity: "ERROR", table: "docs", schema, constraint: "docs_name_key" });
    expect((dup as NeonDbError).detail).toMatch(/already exists/);
    await expect(sql.query("SELEC 1")).rejects.toMatchObject({ code: "42601", position: "1" });
    await expect(sql.query("SELECT 1/0")).rejects.toMatchObject({ code: "22012", message: "division by zero" });
    // One statement per request, like Neon (extended protocol).
    await expect(sql.query("SELECT 1; SELECT 2")).rejects.toMatchObject({ code: "42601" });
  });

  it("runs sql.transaction() batches in one transaction with the requested settings", async () => {
    const [ins, count, iso] = await sql.transaction(
      [
        sql.query(`INSERT INTO ${T} (name) VALUES ($1) RETURNING name`, ["tx1"]),
        sql.query(`SELECT count(*)::int4 AS c FROM ${T} WHERE name = 'tx1'`), // sees the insert
        sql`SHOW transaction_isolation`,
      ],
      { isolationLevel: "Serializable" },
    );
    expect(ins).toEqual([{ name: "tx1" }]);
    expect(count).toEqual([{ c: 1 }]);
    expect(iso).toEqual([{ transaction_isolation: "serializable" }]);

    // A failing statement rolls back the whole batch.
    await expect(
      sql.transaction([sql.query(`INSERT INTO ${T} (name) VALUES ('tx2')`), sql.query(`INSERT INTO ${T} (name) VALUES ('dup')`)]),
    ).rejects.toMatchObject({ code: "23505" });
    expect(await sql.query(`SELECT 1 FROM ${T} WHERE name = 'tx2'`)).toEqual([]);

    await expect(
      sql.transaction([sql.query(`INSERT INTO ${T} (name) VALUES ('ro')`)], { readOnly: true }),
    ).rejects.toMatchObject({ code: "25006" });
  });

  it("speaks the non-raw protocol too: JSON values, object rows, JSON params", async () => {
    const { status, json, headers } = await post({
      query: "SELECT true AS b, 7::int2 AS i, 2::int8 AS big, 1.5::float8 AS f, '{\"a\":1}'::jsonb AS j, ARRAY[1, NULL]::int4[] AS arr, NULL::text AS n",
    });
    expect(status).toBe(200);
    expect(headers.get("access-control-allow-origin")).toBe("*");
    expect(json).toMatchObject({
      rows: [{ b: true, i: 7, big: "2", f: 1.5, j: { a: 1 }, arr: [1, null], n: null }],
      command: "SELECT",
      rowCount: 1,
      rowAsArray: false,
    });
    expect(json.fields[0]).toEqual({ name: "b", dataTypeID: 16, tableID: 0, columnID: 0, dataTypeSize: 1, dataTypeModifier: -1, format: "text" });

    // Non-string params become Postgres text the way Neon's proxy converts them.
    const params = await post({ query: "SELECT $1::int4 AS i, $2::bool AS b, $3::jsonb AS j, $4::text[] AS a", params: [5, false, { k: "v" }, ["x\"y", null, 1]], arrayMode: true });
    expect(params.json.rows).toEqual([[5, false, { k: "v" }, ['x"y', null, "1"]]]);
  });
});
