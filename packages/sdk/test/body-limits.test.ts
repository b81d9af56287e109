/**
 * serve() reads no body it is going to refuse: a request without a signature of the right shape
 * is answered 401 before a byte of its body is read, and one larger than any invocation is
 * answered 413 once it passes the limit, with the rest left unread.
 */
import { request as httpRequest, createServer, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { HEADERS } from "@stepwise/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { serve as serveFetch } from "../src/adapters/fetch.ts";
import { serve as serveNode } from "../src/adapters/node.ts";
import { DEFAULT_MAX_REQUEST_BYTES } from "../src/serve.ts";
import { Stepwise } from "../src/index.ts";

const KEY = "limits-key";
const SHAPED = `t=${Math.floor(Date.now() / 1000)},s=${"ab".repeat(32)}`;
const CHUNK = new Uint8Array(64 * 1024).fill(0x20);

function app() {
  const client = new Stepwise({ id: "shop", signingKey: KEY });
  const ran: string[] = [];
  const fn = client.createFunction({ id: "fulfil", triggers: [] }, async () => void ran.push("body"));
  return { client, functions: [fn], ran };
}

/** A body that never ends, counting how many chunks were pulled from it. */
function endlessBody(): { stream: ReadableStream<Uint8Array>; pulled: () => number } {
  let pulls = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls++;
      controller.enqueue(CHUNK);
    },
  });
  return { stream, pulled: () => pulls };
}

function post(body: ReadableStream<Uint8Array>, headers: Record<string, string>): Request {
  return new Request("https://shop.example/api/durable?fnId=fulfil", { method: "POST", body, headers, duplex: "half" } as RequestInit);
}

describe("serve() and request bodies", () => {
  it("answers an unsigned POST with 401 without reading its body", async () => {
    const { client, functions, ran } = app();
    const { stream, pulled } = endlessBody();
    const response = await serveFetch({ client, functions })(post(stream, {}));
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: string }).error).toMatch(/Missing x-stepwise-signature/);
    // A stream is asked for its first chunk when it is made; nothing more was read.
    expect(pulled()).toBeLessThanOrEqual(1);
    expect(ran).toEqual([]);
  });

  it("answers a malformed signature header with 401 without reading the body", async () => {
    const { client, functions } = app();
    const { stream, pulled } = endlessBody();
    const response = await serveFetch({ client, functions })(post(stream, { [HEADERS.signature]: "t=1,s=nothex" }));
    expect(response.status).toBe(401);
    expect(pulled()).toBeLessThanOrEqual(1);
  });

  it("stops reading a body at the default limit and answers 413", async () => {
    const { client, functions, ran } = app();
    const { stream, pulled } = endlessBody();
    const response = await serveFetch({ client, functions })(post(stream, { [HEADERS.signature]: SHAPED }));
    expect(response.status).toBe(413);
    expect(((await response.json()) as { error: string }).error).toMatch(/larger than 41943040 bytes.*maxRequestBytes/);
    const read = pulled() * CHUNK.byteLength;
    expect(read).toBeGreaterThan(DEFAULT_MAX_REQUEST_BYTES);
    expect(read).toBeLessThan(DEFAULT_MAX_REQUEST_BYTES + 4 * CHUNK.byteLength);
    expect(ran).toEqual([]);
  });

  it("refuses a declared content-length over the limit before reading", async () => {
    const { client, functions } = app();
    const { stream, pulled } = endlessBody();
    const headers = { [HEADERS.signature]: SHAPED, "content-length": String(200 * 1024 * 1024) };
    const response = await serveFetch({ client, functions, maxRequestBytes: 1024 })(post(stream, headers));
    expect(response.status).toBe(413);
    expect(pulled()).toBeLessThanOrEqual(1);
  });
});

describe("the Node adapter and request bodies", () => {
  let server: Server | undefined;
  afterEach(() => {
    server?.closeAllConnections();
    return new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  });

  it("answers an unsigned 200 MB upload with 401 before the client has sent it", { timeout: 10_000 }, async () => {
    const { client, functions, ran } = app();
    const handler = serveNode({ client, functions });
    server = createServer((req, res) => void handler(req, res));
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: "127.0.0.1", port, path: "/api/durable?fnId=fulfil", method: "POST", headers: { "content-length": String(200 * 1024 * 1024) } });
      req.on("response", (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on("error", reject);
      // One megabyte of the promised 200: the answer must not wait for the rest.
      for (let i = 0; i < 16; i++) req.write(CHUNK);
    });
    expect(status).toBe(401);
    expect(ran).toEqual([]);
  });
});

describe("the Node adapter and requests it cannot read", () => {
  let server: Server | undefined;
  afterEach(() => {
    server?.closeAllConnections();
    return new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  });

  it.each([
    // Ignored: only http and https are taken from it.
    ["an X-Forwarded-Proto that is no protocol", "Host: 127.0.0.1\r\nX-Forwarded-Proto: a b\r\n", 200],
    ["a Host that is no host", "Host: a b\r\n", 400],
    ["a Host with a bad port", "Host: 127.0.0.1:99999\r\n", 400],
  ])("answers %s (%#) and stays up", async (_, headers, expected) => {
    const { client, functions } = app();
    const handler = serveNode({ client, functions, serveUrl: "https://shop.example/api/durable" });
    server = createServer((req, res) => void handler(req, res));
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, "127.0.0.1", () => socket.write(`GET /api/durable HTTP/1.1\r\n${headers}Connection: close\r\n\r\n`));
      let answer = "";
      socket.on("data", (chunk) => (answer += String(chunk)));
      socket.on("end", () => resolve(answer));
      socket.on("error", reject);
    });
    expect(Number(raw.split(" ")[1]), raw.split("\r\n")[0]).toBe(expected);
    const again = await fetch(`http://127.0.0.1:${port}/api/durable`);
    expect(again.status).toBe(200);
  });
});
