/**
 * Upstash-compatible REST bridge: lets the official `@upstash/redis` client run unchanged against
 * a plain local Redis in development, tests and CI. It speaks the subset of Upstash's REST API
 * the client uses, plus the documented path form for curl:
 *   POST /             body ["SET","k","v"]          -> { result } | 400 { error }
 *   POST /pipeline     body [["SET","k","v"], ...]   -> [{ result } | { error }, ...]
 *   POST /multi-exec   same body, run in MULTI/EXEC  -> [{ result } | { error }, ...] | 400 { error }
 *   GET|POST|PUT /set/k/v?EX=100 (a POST/PUT body is appended as the last path argument)
 * with `Authorization: Bearer <token>` (or `?_token=`), and `Upstash-Encoding: base64`.
 *
 * Not for production: no TLS, one token, and it listens on 127.0.0.1 by default.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Hono, type Context } from "hono";
import {
  BridgeRequestError,
  encodeResult,
  parseCommand,
  parseCommandList,
  parseJsonBody,
  toEntry,
  type RedisArg,
  type Settled,
  type UpstashEntry,
} from "./upstash-encoding.ts";
import { connectRedisExecutor, isReplyError, type RedisExecutor } from "./upstash-redis.ts";

/** Options for {@link startUpstashBridge}. */
export interface UpstashBridgeOptions {
  /** Port to listen on; 0 (default) picks a free one. */
  port?: number;
  /** Interface to listen on (default 127.0.0.1: never expose the bridge on the network). */
  host?: string;
  /** Redis to forward to (default redis://127.0.0.1:6379). */
  redisUrl?: string;
  /** The bearer token clients must present (the client's `token` option). */
  token: string;
}

/** A running bridge. */
export interface UpstashBridge {
  port: number;
  /** Base URL for the client's `url` option, e.g. `http://127.0.0.1:40123`. */
  url: string;
  token: string;
  redisUrl: string;
  /** Stops listening, drops open HTTP connections and closes the Redis connections. */
  close(): Promise<void>;
}

const sha256 = (s: string) => createHash("sha256").update(s).digest();

// Redis's own error replies (and requests the bridge refuses) pass through verbatim, as Upstash
// does; anything else is the bridge failing (Redis unreachable...) and says so.
const isClientError = (err: Error) => err instanceof BridgeRequestError || isReplyError(err);
const errorText = (err: Error) => (isClientError(err) ? err.message : `ERR upstash bridge: ${err.message}`);
const entries = (settled: Settled[], base64: boolean): UpstashEntry[] =>
  settled.map((s) => (s.ok ? toEntry(s, base64) : { error: errorText(s.error) }));

/** Builds the Hono app over a connected executor (exported for embedding in another server). */
export function createUpstashApp(executor: RedisExecutor, token: string): Hono {
  const expected = sha256(token);
  const authorized = (c: Context): boolean => {
    const header = c.req.header("authorization") ?? "";
    const presented = /^bearer\s+/i.test(header) ? header.replace(/^bearer\s+/i, "") : c.req.query("_token");
    // Compare digests so the check takes the same time whatever the presented token is.
    return presented !== undefined && timingSafeEqual(sha256(presented), expected);
  };
  const wantsBase64 = (c: Context) => c.req.header("upstash-encoding")?.toLowerCase() === "base64";
  const readBody = async (c: Context) => Buffer.from(await c.req.arrayBuffer());
  // Upstash hands out a read-your-writes token the client echoes back; one Redis has no replicas
  // to wait for, so a counter is enough to keep the header present like the real service.
  let syncToken = 0;

  const app = new Hono();

  app.onError((err, c) => c.json({ error: errorText(err) }, isClientError(err) ? 400 : 500));

  // Health check for scripts waiting on the bridge; says nothing about the Redis behind it.
  app.on(["GET", "HEAD"], "/", (c) => c.text("Stepwise upstash bridge\n"));

  app.use("*", async (c, next) => {
    if (!["GET", "HEAD", "POST", "PUT"].includes(c.req.method)) return c.json({ error: "Method Not Allowed" }, 405);
    if (!authorized(c)) return c.json({ error: "Unauthorized" }, 401);
    const format = c.req.header("upstash-response-format")?.toLowerCase();
    if (format === "resp2") {
      throw new BridgeRequestError("ERR Upstash-Response-Format: resp2 is not supported by the upstash bridge (json only)");
    }
    if (format !== undefined && format !== "json") throw new BridgeRequestError(`ERR invalid Upstash-Response-Format: ${format}`);
    c.header("upstash-sync-token", String(++syncToken));
    await next();
  });

  app.post("/", async (c) => {
    const [name, args] = parseCommand(parseJsonBody(await readBody(c)));
    return c.json({ result: encodeResult(await executor.run(name, args), wantsBase64(c)) });
  });

  app.post("/pipeline", async (c) => {
    const settled = await executor.pipeline(parseCommandList(parseJsonBody(await readBody(c))));
    return c.json(entries(settled, wantsBase64(c)));
  });

  app.post("/multi-exec", async (c) => {
    const settled = await executor.transaction(parseCommandList(parseJsonBody(await readBody(c))));
    return c.json(entries(settled, wantsBase64(c)));
  });

  // Path form: /COMMAND/arg1/.../argN, body appended as the last argument, then query params.
  // The client's subscribe()/psubscribe() event streams (POST /subscribe/<channel>) land here
  // too and get the executor's clear "not available" error instead of a stream.
  app.on(["GET", "HEAD", "POST", "PUT"], "/*", async (c) => {
    const url = new URL(c.req.url);
    let segments: string[];
    try {
      segments = url.pathname.split("/").filter((s) => s !== "").map((s) => decodeURIComponent(s));
    } catch {
      throw new BridgeRequestError("ERR malformed percent-encoding in the request path");
    }
    const [name, ...rest] = segments;
    if (name === undefined) throw new BridgeRequestError("ERR empty command");
    const args: RedisArg[] = rest;
    if (c.req.method === "POST" || c.req.method === "PUT") {
      const body = await readBody(c);
      if (body.length > 0) args.push(body); // a Buffer: binary values survive as sent
    }
    for (const [key, value] of url.searchParams) {
      if (key === "_token") continue;
      args.push(key);
      if (value !== "") args.push(value);
    }
    return c.json({ result: encodeResult(await executor.run(name, args), wantsBase64(c)) });
  });

  return app;
}

/** Connects to Redis, then listens; resolves once both are ready. Logs nothing per request. */
export async function startUpstashBridge(options: UpstashBridgeOptions): Promise<UpstashBridge> {
  if (!options.token) throw new Error("upstash bridge: a token is required");
  const host = options.host ?? "127.0.0.1";
  const redisUrl = options.redisUrl ?? "redis://127.0.0.1:6379";
  const executor = await connectRedisExecutor(redisUrl);
  const app = createUpstashApp(executor, options.token);

  let server: Server;
  let port: number;
  try {
    ({ server, port } = await new Promise<{ server: Server; port: number }>((resolve, reject) => {
      // overrideGlobalObjects off: the bridge often runs inside a test process whose own
      // fetch/Response must stay Node's.
      const s = serve({ fetch: app.fetch, port: options.port ?? 0, hostname: host, overrideGlobalObjects: false }, (info: AddressInfo) =>
        resolve({ server: s as Server, port: info.port }),
      );
      s.once("error", reject);
    }));
  } catch (err) {
    await executor.close();
    throw err;
  }

  let closing: Promise<void> | undefined;
  return {
    port,
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    token: options.token,
    redisUrl,
    close: () =>
      (closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        // fetch keeps connections alive; without this, close() would wait for them to time out.
        server.closeAllConnections();
        await closed;
        await executor.close();
      })()),
  };
}
