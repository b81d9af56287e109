/**
 * WebSocket-to-TCP bridge: lets @neondatabase/serverless (which only speaks Postgres over a
 * WebSocket) reach a plain local PostgreSQL in development, tests and CI. It plays the role of
 * Neon's `wsproxy`: the driver opens `ws://<bridge>/v2?address=<host>:<port>` and every binary
 * frame is the raw Postgres wire protocol, piped verbatim to a TCP socket and back.
 *
 * Not for production: no TLS, no auth. It only forwards to an allow-list of targets so a bridge
 * left running is not an open proxy into the machine's network.
 */
import { createServer, type IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer, WebSocket, type RawData } from "ws";

/** Options for {@link startWsTcpBridge}. */
export interface WsTcpBridgeOptions {
  /** Port to listen on; 0 (default) picks a free one. */
  port?: number;
  /** Interface to listen on (default 127.0.0.1: never expose the bridge on the network). */
  host?: string;
  /** `host:port` targets the bridge may open (default 127.0.0.1:5432 and localhost:5432). */
  allowedTargets?: string[];
}

/** A running bridge. */
export interface WsTcpBridge {
  port: number;
  /** Base URL, e.g. `ws://127.0.0.1:40123`. */
  url: string;
  /** Ready-made value for the Neon driver's `wsProxy` option (no protocol, as it expects). */
  wsProxy: (host: string, port: number | string) => string;
  /** Stops listening and closes every open connection. */
  close(): Promise<void>;
}

/** Targets allowed when none are given: the local Postgres service only. */
export const DEFAULT_ALLOWED_TARGETS = ["127.0.0.1:5432", "localhost:5432"];

// Above this much data queued on the WebSocket we stop reading from TCP, so a slow client
// cannot make the bridge buffer a large result set in memory.
const HIGH_WATER = 1 << 20;
const LOW_WATER = 1 << 18;
// After one side closed, how long the other may take to flush before it is destroyed.
const LINGER_MS = 2_000;

/** Parses `?address=host:port` (IPv6 as `[::1]:5432`); undefined when malformed. */
export function parseTarget(address: string | null): { host: string; port: number } | undefined {
  if (!address) return undefined;
  const i = address.lastIndexOf(":");
  if (i <= 0) return undefined;
  let host = address.slice(0, i);
  const port = Number(address.slice(i + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return { host, port };
}

const targetKey = (host: string, port: number) =>
  `${host.includes(":") ? `[${host}]` : host}:${port}`.toLowerCase();

/** Starts the bridge; resolves once it listens. */
export async function startWsTcpBridge(options: WsTcpBridgeOptions = {}): Promise<WsTcpBridge> {
  const host = options.host ?? "127.0.0.1";
  const allowed = new Set(
    (options.allowedTargets ?? DEFAULT_ALLOWED_TARGETS).map((t) => {
      const parsed = parseTarget(t);
      if (!parsed) throw new Error(`ws-tcp bridge: invalid allowed target "${t}" (want host:port)`);
      return targetKey(parsed.host, parsed.port);
    }),
  );
  const open = new Set<{ ws?: WebSocket; tcp: Socket }>();
  const http = createServer((_req, res) => {
    res.writeHead(426, { "content-type": "text/plain" }).end("WebSocket upgrade required\n");
  });
  // perMessageDeflate off: the Neon driver does not negotiate it, and compressing wire
  // protocol frames locally would only cost CPU.
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

  http.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const reject = (status: string, why: string) => {
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n${why}\n`);
    };
    socket.on("error", () => socket.destroy());
    const url = new URL(req.url ?? "/", "http://bridge");
    const target = parseTarget(url.searchParams.get("address"));
    if (!target) return reject("400 Bad Request", "expected ?address=host:port");
    if (!allowed.has(targetKey(target.host, target.port))) {
      return reject("403 Forbidden", `target ${target.host}:${target.port} is not allowed`);
    }
    // Connect TCP before completing the upgrade so an unreachable target is a clear HTTP 502
    // for the client instead of a WebSocket that opens and then dies.
    const tcp = connect({ host: target.host, port: target.port });
    tcp.setNoDelay(true);
    const conn: { ws?: WebSocket; tcp: Socket } = { tcp };
    open.add(conn);
    const onConnectError = (err: Error) => {
      open.delete(conn);
      reject("502 Bad Gateway", `cannot reach ${target.host}:${target.port}: ${err.message}`);
    };
    tcp.once("error", onConnectError);
    tcp.once("connect", () => {
      tcp.off("error", onConnectError);
      if (socket.destroyed) {
        open.delete(conn);
        tcp.destroy();
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        conn.ws = ws;
        pipe(ws, tcp, () => open.delete(conn));
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(options.port ?? 0, host, () => {
      http.off("error", reject);
      resolve();
    });
  });
  const address = http.address();
  if (address === null || typeof address === "string") throw new Error("ws-tcp bridge: no port");
  const port = address.port;
  const authority = `${host.includes(":") ? `[${host}]` : host}:${port}`;

  return {
    port,
    url: `ws://${authority}`,
    wsProxy: (targetHost, targetPort) => `${authority}/v2?address=${targetHost}:${targetPort}`,
    close: async () => {
      for (const c of open) {
        c.ws?.terminate();
        c.tcp.destroy();
      }
      open.clear();
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
      wss.close();
    },
  };
}

/** Pipes one WebSocket and one TCP socket both ways, with backpressure and mutual close. */
function pipe(ws: WebSocket, tcp: Socket, onDone: () => void): void {
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    onDone();
  };

  // WebSocket → TCP: stop reading frames while the TCP socket's buffer is full.
  ws.on("message", (data: RawData) => {
    // The server's binaryType is "nodebuffer", so data is a Buffer (or Buffer[] if fragmented).
    const chunks = Array.isArray(data) ? data : [Buffer.isBuffer(data) ? data : Buffer.from(data)];
    let ok = true;
    for (const chunk of chunks) ok = tcp.write(chunk) && ok;
    if (!ok) ws.pause();
  });
  tcp.on("drain", () => ws.resume());

  // TCP → WebSocket: stop reading TCP while too much is queued on the WebSocket; the send
  // callback fires as queued frames reach the kernel, which is where we resume.
  tcp.on("data", (chunk: Buffer) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(chunk, { binary: true }, () => {
      if (tcp.isPaused() && ws.bufferedAmount < LOW_WATER) tcp.resume();
    });
    if (ws.bufferedAmount > HIGH_WATER) tcp.pause();
  });

  // Either side closing closes the other. Half-close first (end) so bytes already queued are
  // flushed, then destroy after a grace period in case the peer never answers.
  ws.on("close", () => {
    tcp.end();
    setTimeout(() => tcp.destroy(), LINGER_MS).unref();
    finish();
  });
  ws.on("error", () => tcp.destroy());
  tcp.on("end", () => {
    if (ws.readyState === WebSocket.OPEN) ws.close(1000, "target closed");
  });
  tcp.on("error", () => {
    if (ws.readyState === WebSocket.OPEN) ws.close(1011, "target error");
  });
  tcp.on("close", () => {
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
    setTimeout(() => ws.terminate(), LINGER_MS).unref();
    finish();
  });
}
