/**
 * The keep-alive node:http POST both sides of the wire use on Node: the answer comes back
 * whole, a redirect is handed back unfollowed, a long answer is dropped unread, and every way
 * the call can fail rejects with the stage it failed at (before any answer, or during it).
 */
import { createServer, type Server } from "node:http";
import { createServer as createTcpServer, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodePost, PostError } from "../src/node-post.ts";
import { freePort } from "../../../test/support/net.ts";

let server: Server;
let base = "";
const seen: Array<{ body: string; signature: string | undefined; socket: string; url?: string; authorization?: string }> = [];
const options = (more: Partial<{ timeoutMs: number; maxBytes: number }> = {}) => ({ headers: {}, timeoutMs: 5_000, maxBytes: 64 * 1024, ...more });

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      const socket = `${req.socket.remotePort}`;
      seen.push({ body, signature: req.headers["x-stepwise-signature"] as string | undefined, socket, url: req.url, authorization: req.headers.authorization });
      if (req.url === "/slow") return void setTimeout(() => res.end("late"), 1_000);
      if (req.url === "/slow-body") {
        res.writeHead(200, { "content-type": "application/json" });
        res.write('{"type":');
        return void setTimeout(() => res.end('"done"}'), 1_000);
      }
      if (req.url === "/cut") {
        res.writeHead(200, { "content-length": "100" });
        res.write('{"type":"do');
        // After a moment, so what was written is on the wire first.
        return void setTimeout(() => res.destroy(), 20);
      }
      if (req.url === "/huge") return void res.end("x".repeat(200 * 1024));
      if (req.url === "/huge-declared") {
        res.writeHead(200, { "content-length": String(10 * 1024 * 1024) });
        return void res.write("x");
      }
      if (req.url === "/moved") {
        res.writeHead(307, { location: "http://169.254.169.254/latest" });
        return void res.end();
      }
      res.writeHead(409, { "content-type": "application/json" });
      res.end(JSON.stringify({ refused: "run-ended", echo: body.length }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function failure(promise: Promise<unknown>): Promise<PostError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(PostError);
  return error as PostError;
}

describe.runIf(nodePost)("POST over node:http", () => {
  const post = nodePost!;

  it("sends the body and headers and returns the status and text, reusing one kept-alive connection", async () => {
    const body = JSON.stringify({ step: "é ✓ 注文" });
    const before = seen.length;
    for (let i = 0; i < 3; i++) {
      expect(await post(`${base}/api/checkpoints`, body, { ...options(), headers: { "content-type": "application/json", "x-stepwise-signature": "t=1,s=ab" } })).toEqual({
        status: 409,
        location: null,
        text: JSON.stringify({ refused: "run-ended", echo: body.length }),
      });
    }
    const mine = seen.slice(before);
    expect(mine.at(-1)).toMatchObject({ body, signature: "t=1,s=ab" });
    expect(new Set(mine.map((s) => s.socket)).size).toBe(1);
  });

  it("sends the URL's path and query, and its user and password as Basic authentication", async () => {
    const withAuth = base.replace("http://", "http://app%20user:p%40ss@");
    await post(`${withAuth}/api/durable?fnId=fulfil&x=%C3%A9`, "{}", options());
    expect(seen.at(-1)).toMatchObject({ url: "/api/durable?fnId=fulfil&x=%C3%A9", authorization: `Basic ${btoa("app user:p@ss")}` });
    await post(`${base}/api/durable?fnId=other`, "{}", options());
    expect(seen.at(-1)).toMatchObject({ url: "/api/durable?fnId=other", authorization: undefined });
  });

  it("hands a redirect back unfollowed, with where it points", async () => {
    expect(await post(`${base}/moved`, "{}", options())).toEqual({ status: 307, location: "http://169.254.169.254/latest", text: "" });
  });

  it("drops an answer longer than the limit unread, whether it says so up front or not", async () => {
    expect((await post(`${base}/huge`, "{}", options())).text).toBeNull();
    expect((await post(`${base}/huge-declared`, "{}", options())).text).toBeNull();
  });

  it("fails at the request stage when refused or when no answer comes in time", async () => {
    const port = await freePort();
    const refused = await failure(post(`http://127.0.0.1:${port}/api/durable`, "{}", options()));
    expect([refused.stage, refused.message]).toEqual(["request", expect.stringMatching(/ECONNREFUSED/)]);
    const late = await failure(post(`${base}/slow`, "{}", options({ timeoutMs: 200 })));
    expect([late.stage, late.message]).toEqual(["request", "no answer within 200 ms"]);
  });

  it("fails at the answer stage when the answer is cut off or stalls past the time", async () => {
    const cut = await failure(post(`${base}/cut`, "{}", options()));
    expect(cut.stage).toBe("answer");
    const stalled = await failure(post(`${base}/slow-body`, "{}", options({ timeoutMs: 300 })));
    expect([stalled.stage, stalled.message]).toEqual(["answer", "no answer within 300 ms"]);
  });

  it("sends a request once more on a new connection when the kept-alive one it reused is reset before any answer", async () => {
    // A server that answers the first request on each connection and resets the connection when
    // a second arrives on it: what a server closing an idle connection does to a request already on its way.
    const connections: Socket[] = [];
    const tcp = createTcpServer((socket) => {
      connections.push(socket);
      let requests = 0;
      socket.on("data", (chunk) => {
        if (!chunk.toString("latin1").includes("\r\n\r\n")) return;
        if (++requests > 1) return void socket.resetAndDestroy();
        socket.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok");
      });
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => tcp.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(tcp.address() as { port: number }).port}/api/durable`;
    try {
      expect((await post(url, "{}", options())).text).toBe("ok");
      expect((await post(url, "{}", options())).text).toBe("ok");
      expect(connections).toHaveLength(2);
    } finally {
      for (const socket of connections) socket.destroy();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    }
  });

  it("does not send a request again when a fresh connection is reset: the other side may have read it", async () => {
    const tcp = createTcpServer((socket) => {
      socket.on("data", () => socket.resetAndDestroy());
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => tcp.listen(0, "127.0.0.1", resolve));
    let accepted = 0;
    tcp.on("connection", () => accepted++);
    const url = `http://127.0.0.1:${(tcp.address() as { port: number }).port}/fresh`;
    try {
      expect((await failure(post(url, "{}", options()))).stage).toBe("request");
      expect(accepted).toBe(1);
    } finally {
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    }
  });
});
