/**
 * SqlClient over @neondatabase/serverless's `Pool`: node-postgres speaking the Postgres wire
 * protocol through a WebSocket, so it works from Node, Workers and Lambda alike. In production
 * it talks to Neon; in dev/tests it reaches a plain Postgres through the ws-tcp dev bridge.
 *
 * Configuration is per Pool, never global: the Pool's clients are a subclass of the driver's
 * `Client` that sets the per-client `neonConfig` (the driver supports per-client options; the
 * few global-only ones, e.g. `poolQueryViaFetch`, we leave at their defaults). So two clients
 * in one process (Neon in production, a bridged local Postgres in tests) never interfere, and
 * we never mutate the shared `neonConfig` other code may rely on.
 *
 * Optionally (`http`), `query()` goes over Neon's SQL-over-HTTP endpoint instead: one HTTPS
 * request per statement, no WebSocket, the cheapest path from Workers and Lambda. Transactions
 * and `exec()` stay on the WebSocket Pool (HTTP runs one statement per request, and its batch
 * form cannot interleave JS between statements). See {@link NeonHttpOptions} for the one global
 * setting that path may need.
 */
import {
  Client,
  Pool,
  neon,
  neonConfig,
  types,
  type ClientConfig,
  type CustomTypesConfig,
} from "@neondatabase/serverless";
// No `ws` here: this module is what the edge entry ships (Workers have a global WebSocket).
// Node 20, which has none, gets `ws` from `./neon-node.ts`, the one the main entry exports.
import { coalescing } from "./coalescing-websocket.ts";
import { pinnedTypes, pooledTransaction, safeErrorHandler, TransactionAbortedError } from "./node-postgres.ts";
import type { QueryOptions, SqlClient, SqlExecutor } from "../sql.ts";

/** Options for {@link createNeonClient}. */
export interface NeonClientOptions {
  /** `postgres://user:password@host:port/db` (for a bridged local server: its real host/port). */
  connectionString: string;
  /**
   * WebSocket proxy in front of a non-Neon Postgres (e.g. `bridge.wsProxy` from
   * @stepwise/dev-bridges). When set, plain `ws:` is used and connection pipelining is off,
   * because a local proxy has no TLS and a trust/SCRAM server rejects pipelined passwords.
   */
  wsProxy?: string | ((host: string, port: number | string) => string);
  /** Maximum pooled connections (default 10). */
  max?: number;
  /**
   * How long a pooled connection may sit idle before it is closed, in ms (default 10,000, the
   * pool's; 0 keeps idle connections open). Each new connection plans the executor's statements
   * afresh for their first runs.
   */
  idleTimeoutMs?: number;
  /**
   * WebSocket implementation. Default: the global `WebSocket` (Workers, browsers, Node ≥ 22).
   * From the main entry on Node 20, which has none, the `ws` package is the default.
   */
  webSocketConstructor?: unknown;
  /** Receives errors of idle or broken connections (default: console.error). Never throws. */
  onError?: (err: Error) => void;
  /**
   * Send `query()` over Neon's SQL-over-HTTP endpoint (`neon()`); `transaction()` and `exec()`
   * keep using the WebSocket Pool. `true` = Neon's own endpoint; an object customizes it.
   * Results are the same JS types as over the WebSocket. Default: off.
   */
  http?: boolean | NeonHttpOptions;
}

/**
 * The HTTP path of {@link createNeonClient}, per client.
 *
 * The driver only knows a process-wide endpoint and fetch (`neonConfig.fetchEndpoint` and
 * `.fetchFunction` are global-only). So when a client sets either option here, we install ONE
 * pass-through `neonConfig.fetchFunction` (once per process, re-installed if replaced): requests
 * of this client carry a private marker and go to this client's endpoint and fetch; every other
 * request, including other code's own `neon()` calls, goes on to the fetchFunction that was set
 * before (or global `fetch`) unchanged. `neonConfig.fetchEndpoint` is never touched. With
 * neither option set nothing global is touched at all.
 */
export interface NeonHttpOptions {
  /**
   * Where to POST statements: a URL, or `(host, port) => url` given the connection string's
   * host and port (e.g. `bridge.fetchEndpoint` from @stepwise/dev-bridges for a local
   * Postgres). Default: the driver's `neonConfig.fetchEndpoint`, i.e. Neon's endpoint for that
   * host (`https://` + host with its first label replaced by `api.` + `/sql`).
   */
  fetchEndpoint?: string | ((host: string, port: string) => string);
  /**
   * `fetch` to send them with (e.g. a Worker service binding's). Default: the
   * `neonConfig.fetchFunction` other code set, if any, else the global `fetch`.
   */
  fetchFunction?: (input: string, init: RequestInit) => Promise<Response>;
}

const TYPES = pinnedTypes<CustomTypesConfig>(types);

/** Whether a zero-delay timer is clamped here (Node, Bun), so write coalescing costs a millisecond. */
const COALESCE_DELAYS = typeof (globalThis as { setImmediate?: unknown }).setImmediate === "function";

export { TransactionAbortedError };

/** Creates a pooled SqlClient; connections open lazily on first use. */
export function createNeonClient(options: NeonClientOptions): SqlClient {
  const safeOnError = safeErrorHandler(options.onError);
  const BaseWebSocket =
    options.webSocketConstructor ?? (typeof globalThis.WebSocket === "function" ? globalThis.WebSocket : undefined);
  if (!BaseWebSocket) {
    throw new Error("No WebSocket in this runtime: pass webSocketConstructor (e.g. the `ws` package), or use the main @stepwise/store-postgres entry");
  }
  const WebSocketCtor = COALESCE_DELAYS ? coalescing(BaseWebSocket as typeof WebSocket) : BaseWebSocket;
  const { wsProxy } = options;

  class ConfiguredClient extends Client {
    constructor(config?: string | ClientConfig) {
      super(config);
      const c = this.neonConfig;
      c.webSocketConstructor = WebSocketCtor as typeof WebSocket;
      // The driver coalesces a query's messages into one WebSocket frame by deferring the send
      // with setTimeout(0). Node clamps that to 1 ms or more, which made every statement cost
      // about 1.5 ms. Where that clamp exists (Node, Bun) our socket coalesces in a microtask.
      if (COALESCE_DELAYS) c.coalesceWrites = false;
      if (wsProxy !== undefined) {
        c.wsProxy = wsProxy;
        c.useSecureWebSocket = false;
        c.pipelineTLS = false;
        c.pipelineConnect = false;
      }
    }
  }

  const pool = new Pool({ connectionString: options.connectionString, max: options.max ?? 10, idleTimeoutMillis: options.idleTimeoutMs, types: TYPES });
  // The driver's Pool assigns its own `Client` class after pg-pool reads `options.Client`, so
  // the option is ignored; assigning the property before any connect is what takes effect.
  pool.Client = ConfiguredClient;
  // Idle connections can die (server restart, network): pg-pool emits 'error', and an
  // unhandled 'error' event would crash the process. The pool drops the client by itself.
  pool.on("error", (err: Error) => safeOnError(err));
  // Documented switch: with a 'connect' listener the Pool never sends `pool.query()` over
  // HTTP fetch, even if someone sets the global `neonConfig.poolQueryViaFetch`. That path
  // would bypass this Pool's WebSocket settings (wsProxy) and reach a different endpoint.
  pool.on("connect", () => {});

  const httpQuery = options.http ? createHttpQuery(options.connectionString, options.http) : undefined;
  let clientClosed = false;

  return {
    async query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[], options?: QueryOptions) {
      if (httpQuery) {
        // HTTP is stateless, so nothing would stop it; refuse like the ended Pool does.
        if (clientClosed) throw new Error("Cannot query: the client was closed");
        return (await httpQuery(text, params)) as Row[];
      }
      const values = params ? [...params] : undefined;
      const res = options?.prepare ? await pool.query({ name: options.prepare, text, values }) : await pool.query(text, values);
      return res.rows as Row[];
    },

    async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
      return pooledTransaction(await pool.connect(), safeOnError, fn);
    },

    async exec(script: string) {
      // No parameters → node-postgres uses the simple query protocol, which accepts several
      // statements separated by `;` and runs them as one implicit transaction.
      await pool.query(script);
    },

    async close() {
      clientClosed = true;
      if (!pool.ended) await pool.end();
    },
  };
}

type HttpRoute = { endpoint?: string; fetch?: NeonHttpOptions["fetchFunction"] };
type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

// Rides in `fetchOptions`, which the driver spreads into the fetch init (symbol keys included).
const ROUTE = Symbol("stepwise.neonHttpRoute");
let fetchBefore: FetchLike | undefined;
const dispatchFetch: FetchLike = (input, init) => {
  const { [ROUTE]: route, ...rest } = init as RequestInit & { [ROUTE]?: HttpRoute };
  if (!route) return (fetchBefore ?? fetch)(input, init);
  return (route.fetch ?? fetchBefore ?? fetch)(route.endpoint ?? input, rest);
};
function installDispatchFetch(): void {
  const current = neonConfig.fetchFunction as FetchLike | undefined;
  if (current === dispatchFetch) return;
  fetchBefore = current;
  neonConfig.fetchFunction = dispatchFetch;
}

/** `query()` over HTTP: the same parsers as the Pool, so the same JS types come back. */
function createHttpQuery(connectionString: string, http: true | NeonHttpOptions) {
  const opts = http === true ? {} : http;
  let route: HttpRoute | undefined;
  if (opts.fetchEndpoint !== undefined || opts.fetchFunction !== undefined) {
    let endpoint: string | undefined;
    if (typeof opts.fetchEndpoint === "string") endpoint = opts.fetchEndpoint;
    else if (opts.fetchEndpoint) {
      // Host and port exactly as the driver hands them to `neonConfig.fetchEndpoint`: it re-
      // parses the URL as http: (postgres: URLs are not "special", so hosts stay unnormalized).
      const url = new URL(connectionString);
      const { hostname, port } = new URL("http:" + connectionString.slice(url.protocol.length));
      endpoint = opts.fetchEndpoint(hostname, port);
    }
    route = { endpoint, fetch: opts.fetchFunction };
  }
  const sql = neon(connectionString, route ? { fetchOptions: { [ROUTE]: route } } : {});
  return async (text: string, params?: readonly unknown[]): Promise<unknown[]> => {
    if (route) installDispatchFetch();
    // `types` is read per query by the HTTP driver (not from neon()'s options). Raw-text mode
    // means every value arrives as Postgres text and goes through these parsers, exactly as
    // on the wire protocol.
    return sql.query(text, params ? [...params] : [], { types: TYPES });
  };
}
