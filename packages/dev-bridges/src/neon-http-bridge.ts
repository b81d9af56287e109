/**
 * Neon SQL-over-HTTP bridge: a local endpoint that speaks the protocol of Neon's `/sql` (what
 * `neon()` from @neondatabase/serverless sends), so the driver's HTTP path runs against a plain
 * local PostgreSQL in development, tests and CI.
 *
 * Protocol (as Neon's proxy implements it):
 * - `POST /sql`, body `{query, params}` or, for `sql.transaction([...])`, `{queries: [...]}`;
 *   each query may carry `arrayMode`. Params are JSON: strings pass as-is, null is NULL,
 *   numbers/booleans/objects become their JSON text, arrays become Postgres array literals.
 * - Headers: `Neon-Connection-String` (which database; required), `Neon-Raw-Text-Output:
 *   true` (every value as Postgres text, the driver parses it), `Neon-Array-Mode: true` (rows
 *   as arrays, else objects), and for batches `Neon-Batch-Isolation-Level`
 *   (ReadUncommitted|ReadCommitted|RepeatableRead|Serializable), `Neon-Batch-Read-Only`,
 *   `Neon-Batch-Deferrable` ("true"), echoed in the response. A batch runs in one transaction.
 * - 200: `{fields: [{name, dataTypeID, tableID, columnID, dataTypeSize, dataTypeModifier,
 *   format: "text"}], rows, rowCount, command, rowAsArray}`; a batch answers `{results: [...]}`.
 * - Errors: JSON `{message, code, detail, hint, position, …, routine}` (absent fields null);
 *   HTTP 400 for database errors (the driver then throws a NeonDbError with these fields, so
 *   `.code` is the SQLSTATE), 500 for failures that are not the query's fault.
 *
 * Not for production: no TLS, and the password is whatever the connection string says. It only
 * connects to an allow-list of targets so a bridge left running is not an open proxy.
 */
import type { Server } from "node:http";
import { createAdaptorServer } from "@hono/node-server";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import pg from "pg";
import { DEFAULT_ALLOWED_TARGETS, parseTarget } from "./ws-tcp-bridge.ts";

/** Options for {@link startNeonHttpBridge}. */
export interface NeonHttpBridgeOptions {
  /** Port to listen on; 0 (default) picks a free one. */
  port?: number;
  /** Interface to listen on (default 127.0.0.1: never expose the bridge on the network). */
  host?: string;
  /** `host:port` targets the bridge may connect to (default 127.0.0.1:5432 and localhost:5432). */
  allowedTargets?: string[];
}

/** A running bridge. */
export interface NeonHttpBridge {
  port: number;
  /** Base URL, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /**
   * Ready-made endpoint for the driver (`neonConfig.fetchEndpoint`, or the per-client
   * `http.fetchEndpoint` of @stepwise/store-postgres's Neon client): always this bridge's
   * `/sql`; the target database travels in the Neon-Connection-String header.
   */
  fetchEndpoint: (host: string, port: number | string) => string;
  /** Stops listening and closes every pooled Postgres connection. */
  close(): Promise<void>;
}

type QueryData = { query: string; params?: unknown[]; arrayMode?: boolean };
type TxOptions = { isolation?: string; readOnly: boolean; deferrable: boolean };

const ISOLATION: Record<string, string> = { ReadUncommitted: "READ UNCOMMITTED", ReadCommitted: "READ COMMITTED",
  RepeatableRead: "REPEATABLE READ", Serializable: "SERIALIZABLE" };
// Neon's default request limit; a local bridge needs no more.
const MAX_BODY = 10 * 1024 * 1024;
// Return every value as the Postgres text the server sent: the driver parses it itself.
const RAW_TEXT: pg.CustomTypesConfig = { getTypeParser: (() => (v: string) => v) as never };
const ERROR_FIELDS = ["code", "detail", "hint", "position", "internalPosition", "internalQuery", "severity",
  "where", "table", "column", "schema", "dataType", "constraint", "file", "line", "routine"] as const;

class BridgeError extends Error {
  constructor(readonly status: 400 | 403 | 500, message: string) {
    super(message);
  }
}

const targetKey = (host: string, port: number) =>
  `${host.includes(":") ? `[${host}]` : host}:${port}`.toLowerCase();

/** Starts the bridge; resolves once it listens. */
export async function startNeonHttpBridge(options: NeonHttpBridgeOptions = {}): Promise<NeonHttpBridge> {
  const host = options.host ?? "127.0.0.1";
  const allowed = new Set(
    (options.allowedTargets ?? DEFAULT_ALLOWED_TARGETS).map((t) => {
      const parsed = parseTarget(t);
      if (!parsed) throw new Error(`neon-http bridge: invalid allowed target "${t}" (want host:port)`);
      return targetKey(parsed.host, parsed.port);
    }),
  );
  // One pool per database+role, like Neon's proxy pools connections between requests.
  const pools = new Map<string, pg.Pool>();

  function poolFor(connectionString: string | undefined): pg.Pool {
    if (!connectionString) throw new BridgeError(400, "missing Neon-Connection-String header");
    let url: URL;
    try {
      url = new URL(connectionString);
    } catch {
      throw new BridgeError(400, "Neon-Connection-String is not a valid URL");
    }
    if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
      throw new BridgeError(400, "Neon-Connection-String must be a postgres:// URL");
    }
    const targetHost = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = url.port ? Number(url.port) : 5432;
    if (!allowed.has(targetKey(targetHost, port))) {
      throw new BridgeError(403, `target ${targetHost}:${port} is not allowed`);
    }
    // Build the config ourselves rather than handing pg the URL: `sslmode` and friends in it
    // describe the client's hop to Neon (HTTPS here), not the bridge's hop to Postgres.
    const config = {
      host: targetHost,
      port,
      user: decodeURIComponent(url.username) || "postgres",
      password: decodeURIComponent(url.password) || undefined,
      database: decodeURIComponent(url.pathname.slice(1)) || undefined,
      application_name: url.searchParams.get("application_name") ?? undefined,
    };
    const key = JSON.stringify(config);
    let pool = pools.get(key);
    if (!pool) {
      pool = new pg.Pool({ ...config, max: 10, idleTimeoutMillis: 10_000, types: RAW_TEXT });
      // An idle connection dying must not crash the bridge; the pool replaces it.
      pool.on("error", () => {});
      pools.set(key, pool);
    }
    return pool;
  }

  const app = new Hono();
  // Neon answers browsers too (`Access-Control-Allow-Origin: *`).
  app.use("/sql", cors());
  app.post("/sql", bodyLimit({ maxSize: MAX_BODY }), async (c) => {
    try {
      return await handleSql(c, poolFor(c.req.header("Neon-Connection-String")));
    } catch (err) {
      return errorResponse(c, err);
    }
  });

  // overrideGlobalObjects off: the adapter would otherwise swap the process's global Request/
  // Response, and the bridge usually runs inside the tests that use them.
  const server = createAdaptorServer({ fetch: app.fetch, overrideGlobalObjects: false }) as Server;
  // Never close idle keep-alive sockets from our side: if the server times one out just as the
  // client reuses it (easy after an event-loop stall, e.g. PGlite compiling in the same
  // process), the request dies with ECONNRESET. Clients (undici: 4 s) close idle ones first.
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("neon-http bridge: no port");
  const authority = `${host.includes(":") ? `[${host}]` : host}:${address.port}`;

  return {
    port: address.port,
    url: `http://${authority}`,
    fetchEndpoint: () => `http://${authority}/sql`,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((p) => p.end().catch(() => undefined)));
    },
  };
}

async function handleSql(c: Context, pool: pg.Pool): Promise<Response> {
  const raw = c.req.header("Neon-Raw-Text-Output") === "true";
  const arrayMode = c.req.header("Neon-Array-Mode") === "true";
  const isolationHeader = c.req.header("Neon-Batch-Isolation-Level");
  if (isolationHeader !== undefined && !ISOLATION[isolationHeader]) throw new BridgeError(400, "invalid isolation level");
  const tx: TxOptions = {
    isolation: isolationHeader,
    readOnly: c.req.header("Neon-Batch-Read-Only") === "true",
    deferrable: c.req.header("Neon-Batch-Deferrable") === "true",
  };
  const payload: unknown = await c.req.json().catch(() => {
    throw new BridgeError(400, "request body is not valid JSON");
  });
  const run = (client: pg.Pool | pg.PoolClient, q: QueryData) => runQuery(client, q, raw, q.arrayMode ?? arrayMode);

  if (isObject(payload) && Array.isArray(payload.queries)) {
    const queries = payload.queries.map(asQuery);
    const results = await inTransaction(pool, tx, async (client) => {
      const out: unknown[] = [];
      for (const q of queries) out.push(await run(client, q));
      return out;
    });
    // Neon echoes the batch's transaction settings.
    if (tx.isolation) c.header("Neon-Batch-Isolation-Level", tx.isolation);
    if (tx.readOnly) c.header("Neon-Batch-Read-Only", "true");
    if (tx.deferrable) c.header("Neon-Batch-Deferrable", "true");
    return c.json({ results });
  }
  return c.json(await run(pool, asQuery(payload)));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function asQuery(v: unknown): QueryData {
  if (!isObject(v) || typeof v.query !== "string") throw new BridgeError(400, "expected {query, params} or {queries}");
  if (v.params !== undefined && !Array.isArray(v.params)) throw new BridgeError(400, "params must be an array");
  if (v.arrayMode !== undefined && typeof v.arrayMode !== "boolean") throw new BridgeError(400, "arrayMode must be a boolean");
  return v as QueryData;
}

async function inTransaction<T>(pool: pg.Pool, tx: TxOptions, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    let begin = "BEGIN";
    if (tx.isolation) begin += ` ISOLATION LEVEL ${ISOLATION[tx.isolation]}`;
    if (tx.readOnly) begin += " READ ONLY";
    if (tx.deferrable) begin += " DEFERRABLE";
    await client.query(begin);
    const out = await fn(client);
    await client.query("COMMIT");
    return out;
  } catch (err) {
    await client.query("ROLLBACK").catch((e: Error) => (broken = e));
    throw err;
  } finally {
    client.release(broken);
  }
}

async function runQuery(client: pg.Pool | pg.PoolClient, q: QueryData, raw: boolean, arrayMode: boolean) {
  // Extended protocol always, as Neon does: one statement per query, even without params.
  const res = await client.query({
    text: q.query,
    values: (q.params ?? []).map(paramToText),
    rowMode: "array",
    queryMode: "extended",
  } as pg.QueryArrayConfig);
  const fields = res.fields.map(({ name, dataTypeID, tableID, columnID, dataTypeSize, dataTypeModifier }) =>
    ({ name, dataTypeID, tableID, columnID, dataTypeSize, dataTypeModifier, format: "text" }));
  const rows = res.rows.map((row: unknown[]) => {
    const vals = raw ? row : row.map((v, i) => (v === null ? null : textToJson(v as string, fields[i]!.dataTypeID)));
    return arrayMode ? vals : Object.fromEntries(fields.map((f, i) => [f.name, vals[i]]));
  });
  return { fields, rows, rowCount: res.rowCount ?? null, command: res.command, rowAsArray: arrayMode };
}

/** Neon's JSON → Postgres text rule for parameters. */
function paramToText(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === "string") return v;
  if (Array.isArray(v)) return arrayLiteral(v);
  return JSON.stringify(v);
}

function arrayLiteral(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  if (Array.isArray(v)) return `{${v.map(arrayLiteral).join(",")}}`;
  // Inside an array literal strings (and objects, as JSON text) must be quoted and escaped;
  // JSON string syntax is what Neon writes, and Postgres reads its \" and \\ escapes.
  return typeof v === "object" ? JSON.stringify(JSON.stringify(v)) : JSON.stringify(v);
}

// Non-raw mode (not what the driver asks for, but part of the protocol): Neon turns bool,
// int2/int4, float and json into JSON values and Postgres arrays into JSON arrays; everything
// else (int8, numeric, dates…) stays text. Array types we know → their element type.
const ARRAY_ELEMENT: Record<number, number> = {
  1000: 16, 1001: 17, 1005: 21, 1007: 23, 1009: 25, 1014: 1042, 1015: 1043, 1016: 20, 1021: 700,
  1022: 701, 1028: 26, 1115: 1114, 1182: 1082, 1183: 1083, 1185: 1184, 1231: 1700, 2951: 2950,
  199: 114, 3807: 3802,
};
// text[]'s parser splits any array's text into nested strings (and nulls).
const parseTextArray = (pg.types.getTypeParser as (oid: number, f: "text") => (v: string) => unknown)(1009, "text");

function textToJson(v: string, oid: number): unknown {
  const element = ARRAY_ELEMENT[oid];
  if (element !== undefined) {
    const walk = (x: unknown): unknown => (Array.isArray(x) ? x.map(walk) : x === null ? null : textToJson(x as string, element));
    return walk(parseTextArray(v));
  }
  switch (oid) {
    case 16: return v === "t";
    case 21: case 23: return Number(v);
    case 700: case 701: return Number.isFinite(Number(v)) ? Number(v) : v;
    case 114: case 3802: return JSON.parse(v);
    default: return v;
  }
}

function errorResponse(c: Context, err: unknown): Response {
  if (err instanceof BridgeError) {
    return c.json({ message: err.message, code: "" }, err.status);
  }
  const e = (err instanceof Error ? err : new Error(String(err))) as Error & Record<string, unknown>;
  const body: Record<string, unknown> = { message: e.message };
  for (const k of ERROR_FIELDS) body[k] = e[k] ?? null;
  // A DatabaseError is Postgres refusing the query (or the login): the caller's problem, 400,
  // which the driver turns into a NeonDbError carrying these fields. Anything else (target
  // unreachable, bridge bug) is a server error, as on Neon.
  if (err instanceof pg.DatabaseError) return c.json(body, 400);
  body.code = "";
  return c.json(body, 500);
}
