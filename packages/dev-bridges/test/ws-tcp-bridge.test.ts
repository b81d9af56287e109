import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startWsTcpBridge, type WsTcpBridge } from "../src/index.ts";

/** Opens a client WebSocket; resolves when open, rejects with the HTTP status when refused. */
function openWs(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once("open", () => resolve(ws));
    ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once("error", reject);
  });
}

const once = <T>(emitter: { once(ev: string, fn: (v: T) => void): unknown }, ev: string) =>
  new Promise<T>((resolve) => emitter.once(ev, resolve));

describe("ws-tcp bridge", () => {
  let echo: Server;
  let echoPort = 0;
  const serverSockets: Socket[] = [];
  let bridge: WsTcpBridge;

  beforeAll(async () => {
    // Tiny TCP echo server standing in for Postgres.
    echo = createServer((s) => {
      serverSockets.push(s);
      s.pipe(s);
    });
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
    echoPort = (echo.address() as { port: number }).port;
    bridge = await startWsTcpBridge({ allowedTargets: [`127.0.0.1:${echoPort}`] });
  });

  afterAll(async () => {
    await bridge.close();
    for (const s of serverSockets) s.destroy();
    await new Promise<void>((r) => echo.close(() => r()));
  });

  it("builds the wsProxy address the Neon driver expects", () => {
    expect(bridge.url).toBe(`ws://127.0.0.1:${bridge.port}`);
    expect(bridge.wsProxy("127.0.0.1", 5432)).toBe(`127.0.0.1:${bridge.port}/v2?address=127.0.0.1:5432`);
  });

  it("refuses targets outside allowedTargets, malformed addresses and unreachable targets", async () => {
    await expect(openWs(`${bridge.url}/v2?address=127.0.0.1:5432`)).rejects.toThrow("HTTP 403");
    await expect(openWs(`${bridge.url}/v2?address=example.com:${echoPort}`)).rejects.toThrow("HTTP 403");
    await expect(openWs(`${bridge.url}/v2`)).rejects.toThrow("HTTP 400");
    await expect(openWs(`${bridge.url}/v2?address=nonsense`)).rejects.toThrow("HTTP 400");

    // Allowed but nothing listens there: a clear 502 instead of a socket that dies later.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const deadPort = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const other = await startWsTcpBridge({ allowedTargets: [`127.0.0.1:${deadPort}`] });
    try {
      await expect(openWs(`ws://${other.wsProxy("127.0.0.1", deadPort)}`)).rejects.toThrow("HTTP 502");
    } finally {
      await other.close();
    }
  });

  it("uses the default allow-list (local Postgres only) when none is given", async () => {
    const def = await startWsTcpBridge();
    try {
      await expect(openWs(`${def.url}/v2?address=127.0.0.1:${echoPort}`)).rejects.toThrow("HTTP 403");
    } finally {
      await def.close();
    }
  });

  it("pipes bytes both ways, including a large payload under backpressure", async () => {
    const ws = await openWs(`ws://${bridge.wsProxy("127.0.0.1", echoPort)}`);
    const received: Buffer[] = [];
    let total = 0;
    const payload = randomBytes(8 * 1024 * 1024);
    const done = new Promise<void>((resolve) => {
      ws.on("message", (data: Buffer) => {
        received.push(data);
        total += data.length;
        if (total >= payload.length + 5) resolve();
      });
    });
    ws.send(Buffer.from("hello"));
    // Many frames so both directions fill their buffers at once.
    for (let i = 0; i < payload.length; i += 64 * 1024) ws.send(payload.subarray(i, i + 64 * 1024));
    await done;
    const all = Buffer.concat(received);
    expect(all.subarray(0, 5).toString()).toBe("hello");
    const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
    expect(sha(all.subarray(5))).toBe(sha(payload));
    ws.close();
    await once(ws, "close");
  });

  it("closing the WebSocket closes the TCP side", async () => {
    const before = serverSockets.length;
    const ws = await openWs(`ws://${bridge.wsProxy("127.0.0.1", echoPort)}`);
    await waitFor(() => serverSockets.length > before);
    const tcp = serverSockets[serverSockets.length - 1]!;
    const tcpClosed = once(tcp, "close");
    ws.close();
    await tcpClosed;
    expect(tcp.destroyed).toBe(true);
  });

  it("closing the TCP side closes the WebSocket", async () => {
    const before = serverSockets.length;
    const ws = await openWs(`ws://${bridge.wsProxy("127.0.0.1", echoPort)}`);
    await waitFor(() => serverSockets.length > before);
    const wsClosed = once<number>(ws, "close");
    serverSockets[serverSockets.length - 1]!.end();
    expect(await wsClosed).toBe(1000);
  });

  it("close() ends open connections", async () => {
    const b = await startWsTcpBridge({ allowedTargets: [`127.0.0.1:${echoPort}`] });
    const ws = await openWs(`ws://${b.wsProxy("127.0.0.1", echoPort)}`);
    const wsClosed = once(ws, "close");
    await b.close();
    await wsClosed;
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 5));
  }
}
