/**
 * The driver parity suite, shared by `drivers.test.ts` (PGlite, Neon over WebSocket) and
 * `drivers-more.test.ts` (pg over TCP, Neon with `query()` over HTTP): every driver must behave,
 * and return JS values, identically.
 */
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPgliteClient } from "../src/drivers/pglite.ts";
import type { SqlClient, SqlExecutor } from "../src/sql.ts";

export const PG_HOST = "127.0.0.1";
export const PG_PORT = 5432;
export const PG_URL = `postgres://postgres@${PG_HOST}:${PG_PORT}/test`;
export const CI = process.env.CI === "true";

function reachable(host: string, port: number, timeoutMs = 1500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (ok: boolean) => (s.destroy(), resolve(ok));
    s.setTimeout(timeoutMs, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

/**
 * Whether the real-PostgreSQL suites run (`runReal`: always under CI=true, else when the server
 * answers) and whether it answered (`pgUp`). Warns visibly when they are skipped.
 */
export async function probePostgres(file: string, what: string): Promise<{ pgUp: boolean; runReal: boolean }> {
  const pgUp = await reachable(PG_HOST, PG_PORT);
  if (!pgUp && !CI) {
    console.warn(`[${file}] PostgreSQL at ${PG_HOST}:${PG_PORT} is unreachable: SKIPPING ${what} (CI=true makes this a failure)`);
  }
  return { pgUp, runReal: pgUp || CI };
}

/** Throws the CI failure when the suites must run but PostgreSQL is not there. */
export function requirePostgres(pgUp: boolean): void {
  if (!pgUp) throw new Error(`CI=true but PostgreSQL at ${PG_HOST}:${PG_PORT} is unreachable`);
}

/** One opened driver. */
export type Driver = { client: SqlClient; stop(): Promise<void> };

/** What a driver's suite runs beyond the common part. */
export interface SuiteOptions {
  /** A real server: runs the multi-connection tests. */
  real: boolean;
  /**
   * Real drivers: opens a second client of the same driver with one pooled connection, the
   * given `onError` and idle timeout, for the killed-connection and idle-timeout tests.
   */
  openSingle?: (onError: (err: Error) => void, idleTimeoutMs?: number) => SqlClient;
}

// A query touching every type whose JS form we promise; no now(), so results are comparable.
export const TYPES_SQL = `SELECT 42::int4 AS i4, 7::int2 AS i2, 9007199254740993::int8 AS i8,
  ARRAY[1, 2]::int8[] AS i8s, 1.25::float8 AS f8, 12.50::numeric AS num, true AS b, 'x'::text AS t,
  '{"a": [1, {"b": null}], "s": "é"}'::jsonb AS jb, '[1, "two"]'::json AS js,
  '2024-02-29T12:34:56.789Z'::timestamptz AS tz, '2024-02-29'::date AS d, NULL::text AS nul`;

export const EXPECTED_TYPES = {
  i4: 42, i2: 7, i8: "9007199254740993", i8s: ["1", "2"], f8: 1.25, num: "12.50", b: true, t: "x",
  jb: { a: [1, { b: null }], s: "é" }, js: [1, "two"],
  tz: new Date("2024-02-29T12:34:56.789Z"), d: "2024-02-29", nul: null,
};

/** Registers the parity suite for one driver. */
export function driverSuite(name: string, open: () => Promise<Driver>, opts: SuiteOptions) {
  describe(name, () => {
    let driver: Driver;
    let db: SqlClient;
    // Own schema per run: parallel runs and leftovers of crashed runs never collide.
    const schema = `drv_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
    const T = `${schema}.items`;

    beforeAll(async () => {
      driver = await open();
      db = driver.client;
      await db.exec(`CREATE SCHEMA ${schema};
        CREATE TABLE ${T} (id bigserial PRIMARY KEY, name text UNIQUE NOT NULL, n int4 NOT NULL DEFAULT 0,
          doc jsonb, at timestamptz NOT NULL DEFAULT now(), big int8);
        CREATE TABLE ${schema}.counter (id int4 PRIMARY KEY, v int4 NOT NULL);
        INSERT INTO ${schema}.counter VALUES (1, 0);`);
    }, 60_000);

    afterAll(async () => {
      if (!db) return;
      await db.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await driver.stop();
    }, 30_000);

    it("returns the promised JS types", async () => {
      const [row] = await db.query(TYPES_SQL);
      expect(row).toEqual(EXPECTED_TYPES);
      expect(row!.tz).toBeInstanceOf(Date);
    });

    it("inserts and selects with parameters (bigserial → string)", async () => {
      const [ins] = await db.query<{ id: string }>(
        `INSERT INTO ${T} (name, n, big) VALUES ($1, $2, $3) RETURNING id`,
        ["p1", 5, 9007199254740993n],
      );
      expect(typeof ins!.id).toBe("string");
      const rows = await db.query(`SELECT id, name, n, big FROM ${T} WHERE name = $1`, ["p1"]);
      expect(rows).toEqual([{ id: ins!.id, name: "p1", n: 5, big: "9007199254740993" }]);
      expect(await db.query(`SELECT 1 FROM ${T} WHERE name = $1`, ["nope"])).toEqual([]);
    });

    it("round-trips jsonb passed as JSON.stringify(value)", async () => {
      const values = [{ a: 1, nested: { list: [1, "x", null] } }, [1, 2, 3], "just a string", 42, true, null];
      for (const [i, v] of values.entries()) {
        await db.query(`INSERT INTO ${T} (name, doc) VALUES ($1, $2)`, [`j${i}`, JSON.stringify(v)]);
      }
      const rows = await db.query<{ doc: unknown }>(`SELECT doc FROM ${T} WHERE name LIKE 'j%' ORDER BY name`);
      expect(rows.map((r) => r.doc)).toEqual(values);
    });

    it("round-trips timestamptz as Date", async () => {
      const at = new Date("2023-06-01T08:09:10.123Z");
      await db.query(`INSERT INTO ${T} (name, at) VALUES ($1, $2)`, ["ts", at]);
      const [row] = await db.query<{ at: Date }>(`SELECT at FROM ${T} WHERE name = 'ts'`);
      expect(row!.at).toBeInstanceOf(Date);
      expect(row!.at.getTime()).toBe(at.getTime());
    });

    it("reports SQLSTATE codes on errors", async () => {
      await db.query(`INSERT INTO ${T} (name) VALUES ('dup')`);
      await expect(db.query(`INSERT INTO ${T} (name) VALUES ('dup')`)).rejects.toMatchObject({ code: "23505" });
    });

    it("commits a transaction", async () => {
      const out = await db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${T} (name) VALUES ($1)`, ["c1"]);
        await tx.query(`INSERT INTO ${T} (name) VALUES ($1)`, ["c2"]);
        return "ok";
      });
      expect(out).toBe("ok");
      const rows = await db.query(`SELECT name FROM ${T} WHERE name IN ('c1','c2') ORDER BY name`);
      expect(rows).toEqual([{ name: "c1" }, { name: "c2" }]);
    });

    it("rolls back when fn throws, rethrowing the same error", async () => {
      const boom = new Error("boom");
      await expect(
        db.transaction(async (tx) => {
          await tx.query(`INSERT INTO ${T} (name) VALUES ($1)`, ["r1"]);
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect(await db.query(`SELECT 1 FROM ${T} WHERE name = 'r1'`)).toEqual([]);
    });

    it("does not commit a transaction aborted by a swallowed error", async () => {
      await expect(
        db.transaction(async (tx) => {
          await tx.query(`INSERT INTO ${T} (name) VALUES ('a1')`);
          await tx.query(`INSERT INTO ${T} (name) VALUES ('dup')`).catch(() => undefined);
        }),
      ).rejects.toMatchObject({ code: "25P02" });
      expect(await db.query(`SELECT 1 FROM ${T} WHERE name = 'a1'`)).toEqual([]);
    });

    it("refuses the tx executor after the transaction ended, for named statements too", async () => {
      let leaked: SqlExecutor | undefined;
      await db.transaction(async (tx) => {
        leaked = tx;
      });
      await expect(leaked!.query("SELECT 1")).rejects.toThrow(/closed/i);
      await expect(leaked!.query("SELECT 1 AS one", [], { prepare: `${schema}_leaked` })).rejects.toThrow(/closed|not .*connected|released/i);
    });

    // The store names its hot statements (`{ prepare }`): each driver keeps them prepared, and a
    // prepared statement must behave exactly as the same text sent unnamed.
    describe("named (prepared) statements", () => {
      const unique = () => `${schema}_${Math.random().toString(36).slice(2, 8)}`;

      it("return the same rows and JS types as the statement sent unnamed, call after call", async () => {
        const name = unique();
        const at = new Date("2023-06-01T08:09:10.123Z");
        const text = `INSERT INTO ${T} (name, n, doc, at, big) VALUES ($1, $2, $3, $4, $5) RETURNING name, n, doc, at, big`;
        for (let i = 0; i < 7; i++) {
          const params = [`prep${i}`, i, JSON.stringify({ i, s: "é" }), at, 9007199254740993n];
          const [row] = await db.query(text, params, { prepare: name });
          expect(row).toEqual({ name: `prep${i}`, n: i, doc: { i, s: "é" }, at, big: "9007199254740993" });
        }
        const [typed] = await db.query(TYPES_SQL, [], { prepare: unique() });
        expect(typed).toEqual(EXPECTED_TYPES);
        expect(await db.query(`SELECT name FROM ${T} WHERE name = $1`, [null], { prepare: unique() })).toEqual([]);
      });

      it("report SQLSTATE codes, and the client goes on working after one fails", async () => {
        const name = unique();
        const text = `INSERT INTO ${T} (name) VALUES ($1)`;
        await db.query(text, ["prep-dup"], { prepare: name });
        await expect(db.query(text, ["prep-dup"], { prepare: name })).rejects.toMatchObject({ code: "23505" });
        await expect(db.query(`SELECT $1::int4 AS n`, ["not a number"], { prepare: unique() })).rejects.toMatchObject({ code: "22P02" });
        expect(await db.query(`SELECT count(*)::int4 AS c FROM ${T} WHERE name = $1`, ["prep-dup"], { prepare: unique() })).toEqual([{ c: 1 }]);
      });

      it("take part in a transaction: committed with it, rolled back with it", async () => {
        const name = unique();
        const text = `INSERT INTO ${T} (name) VALUES ($1)`;
        await db.transaction(async (tx) => {
          await tx.query(text, ["prep-c1"], { prepare: name });
          await tx.query(text, ["prep-c2"], { prepare: name });
        });
        await expect(
          db.transaction(async (tx) => {
            await tx.query(text, ["prep-r1"], { prepare: name });
            throw new Error("discard");
          }),
        ).rejects.toThrow("discard");
        const rows = await db.query(`SELECT name FROM ${T} WHERE name LIKE 'prep-%' AND name <> 'prep-dup' ORDER BY name`);
        expect(rows).toEqual([{ name: "prep-c1" }, { name: "prep-c2" }]);
      });

      it("never run inside another task's open transaction", async () => {
        const name = unique();
        const inserted = db.transaction(async (tx) => {
          await tx.query(`INSERT INTO ${T} (name) VALUES ($1)`, ["prep-open"]);
          await new Promise((r) => setTimeout(r, 20));
          throw new Error("discard");
        });
        // Handled from the start: on a loaded machine the query below outlasts the transaction.
        const discarded = inserted.then(() => undefined, (error: Error) => error.message);
        // Sent while the transaction is open: it must see the committed state only, before or after.
        await new Promise((r) => setTimeout(r, 5));
        const seen = await db.query(`SELECT count(*)::int4 AS c FROM ${T} WHERE name = $1`, ["prep-open"], { prepare: name });
        expect(await discarded).toBe("discard");
        expect(seen).toEqual([{ c: 0 }]);
      });
    });

    it("runs multi-statement scripts with exec", async () => {
      await db.exec(`INSERT INTO ${T} (name) VALUES ('e1'); INSERT INTO ${T} (name) VALUES ('e2');`);
      expect(await db.query(`SELECT count(*)::int4 AS c FROM ${T} WHERE name IN ('e1','e2')`)).toEqual([{ c: 2 }]);
    });

    it("keeps concurrent read-modify-write transactions consistent", async () => {
      const N = 40;
      await Promise.all(
        Array.from({ length: N }, () =>
          db.transaction(async (tx) => {
            const [row] = await tx.query<{ v: number }>(`SELECT v FROM ${schema}.counter WHERE id = 1 FOR UPDATE`);
            await new Promise((r) => setTimeout(r, 1)); // yield so other tasks try to cut in
            await tx.query(`UPDATE ${schema}.counter SET v = $1 WHERE id = 1`, [row!.v + 1]);
          }),
        ),
      );
      expect(await db.query(`SELECT v FROM ${schema}.counter`)).toEqual([{ v: N }]);
    });

    it("never lets plain queries see another task's uncommitted rows", async () => {
      const txs = Array.from({ length: 15 }, (_, i) =>
        db
          .transaction(async (tx) => {
            await tx.query(`INSERT INTO ${T} (name) VALUES ($1)`, [`tmp${i}`]);
            await new Promise((r) => setTimeout(r, 2));
            throw new Error("discard");
          })
          .catch(() => "rolled back"),
      );
      const reads = Array.from({ length: 40 }, () =>
        db.query<{ c: number }>(`SELECT count(*)::int4 AS c FROM ${T} WHERE name LIKE 'tmp%'`),
      );
      const counts = (await Promise.all(reads)).map((r) => r[0]!.c);
      expect(await Promise.all(txs)).toEqual(Array(15).fill("rolled back"));
      expect(counts).toEqual(Array(40).fill(0));
    });

    if (!opts.real) {
      it("turns client.query inside transaction() into an error instead of a hang", async () => {
        const quick = createPgliteClient({ deadlockAfterMs: 200 });
        await expect(quick.transaction(() => quick.query("SELECT 1"))).rejects.toThrow(/deadlock.*tx executor/);
        expect(await quick.query("SELECT 1 AS one")).toEqual([{ one: 1 }]);
        await quick.close();
      });
    }

    if (opts.real) {
      it("lets two transactions claim different rows with FOR UPDATE SKIP LOCKED", async () => {
        await db.exec(`CREATE TABLE ${schema}.jobs (id int4 PRIMARY KEY);
          INSERT INTO ${schema}.jobs SELECT generate_series(1, 4);`);
        const claim = `SELECT id FROM ${schema}.jobs ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`;
        let aClaimed!: () => void;
        const aHasRow = new Promise<void>((r) => (aClaimed = r));
        let bDone!: () => void;
        const bFinished = new Promise<void>((r) => (bDone = r));
        const a = db.transaction(async (tx) => {
          const [row] = await tx.query<{ id: number }>(claim);
          aClaimed();
          await bFinished; // hold A's lock while B claims
          await tx.query(`DELETE FROM ${schema}.jobs WHERE id = $1`, [row!.id]);
          return row!.id;
        });
        await aHasRow;
        const b = await db.transaction(async (tx) => {
          const [row] = await tx.query<{ id: number }>(claim);
          await tx.query(`DELETE FROM ${schema}.jobs WHERE id = $1`, [row!.id]);
          return row!.id;
        });
        bDone();
        expect([await a, b]).toEqual([1, 2]);
        expect(await db.query(`SELECT id FROM ${schema}.jobs ORDER BY id`)).toEqual([{ id: 3 }, { id: 4 }]);
      });

      it("keeps an idle connection for its idle timeout, and closes it after", async () => {
        // The pid comes from a transaction: the pooled connection, even where query() goes over HTTP.
        const pid = async (client: SqlClient) => (await client.transaction((tx) => tx.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")))[0]!.pid;
        // The kept pool is the control: a connection the pool hands out again keeps its backend,
        // so the closed pool's new backend is its timeout's doing.
        const kept = opts.openSingle!(() => {}, 60_000);
        const closed = opts.openSingle!(() => {}, 50);
        try {
          const [keptBefore, closedBefore] = [await pid(kept), await pid(closed)];
          await new Promise((resolve) => setTimeout(resolve, 400));
          expect(await pid(kept)).toBe(keptBefore);
          expect(await pid(closed)).not.toBe(closedBefore);
        } finally {
          await Promise.all([kept.close(), closed.close()]);
        }
      });

      it("survives connections killed while idle in the pool or inside a transaction", async () => {
        const errors: Error[] = [];
        const one = opts.openSingle!((e) => errors.push(e));
        const kill = (pid: number) => db.query("SELECT pg_terminate_backend($1)", [pid]);
        try {
          // Idle: the pool's 'error' event must reach onError, not crash the process. The pid
          // comes from a transaction: that is the pooled connection for every driver, even
          // where query() goes over HTTP.
          const [idle] = await one.transaction((tx) => tx.query<{ pid: number }>("SELECT pg_backend_pid() AS pid"));
          await kill(idle!.pid);
          await waitFor(() => errors.length > 0);
          expect(await one.query("SELECT 1 AS ok")).toEqual([{ ok: 1 }]);

          // Mid-transaction: the transaction fails, the dead client is discarded (max is 1,
          // so the next call would hang forever if it were returned to the pool broken).
          await expect(
            one.transaction(async (tx) => {
              const [row] = await tx.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
              await kill(row!.pid);
              await new Promise((r) => setTimeout(r, 100));
              await tx.query("SELECT 1");
            }),
          ).rejects.toThrow();
          expect(await one.transaction((tx) => tx.query("SELECT 2 AS ok"))).toEqual([{ ok: 2 }]);
        } finally {
          await one.close();
        }
      });
    }
  });
}

/** Polls `cond` every 10 ms until true; throws after `timeoutMs`. */
export async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}
