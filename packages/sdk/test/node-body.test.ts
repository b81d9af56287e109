/**
 * The Node adapter after a body parser: a parsed body without the raw bytes is a setup error, said
 * plainly. And the reader of Node's stream itself, as the Hono adapter shares it with others.
 */
import { createServer, type Server, type ServerResponse } from "node:http";
import { connect as connectHttp2, createServer as createHttp2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import { PassThrough } from "node:stream";
import { HEADERS } from "@stepwise/protocol";
import { afterEach, expect, it } from "vitest";
import { serve, type NodeRequest } from "../src/adapters/node.ts";
import { readBytesCapped } from "../src/adapters/node-call.ts";
import { Stepwise } from "../src/index.ts";
import { request, signedGet, signInvocation } from "./helpers.ts";

const KEY = "node-key";
let server: Server | undefined;
afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

async function listen(prelude: (req: NodeRequest) => Promise<void>): Promise<{ base: string; ran: string[] }> {
  const client = new Stepwise({ id: "shop", signingKey: KEY });
  const ran: string[] = [];
  const fn = client.createFunction({ id: "fulfil", triggers: [] }, async () => void ran.push("body"));
  const handler = serve({ client, functions: [fn] });
  server = createServer((req, res) => void prelude(req).then(() => handler(req, res)));
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/durable`, ran };
}

/** What express.json() without `verify` leaves: the stream consumed, `req.body` an object. */
async function jsonParser(req: NodeRequest): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  req.body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : {};
}

it("answers 500 with how to keep the raw body when a parser consumed it", async () => {
  const { base, ran } = await listen(jsonParser);
  const body = JSON.stringify(request());
  const res = await fetch(`${base}?fnId=fulfil`, { method: "POST", body, headers: { "content-type": "application/json", [HEADERS.signature]: await signInvocation(KEY, `${base}?fnId=fulfil`, body) } });
  expect(res.status).toBe(500);
  expect(res.headers.get(HEADERS.sdk)).toBe("stepwise-js/0.1.0");
  expect(((await res.json()) as { error: string }).error).toMatch(/needs the raw request body.*express\.raw.*req\.rawBody = buf/);
  expect(ran).toEqual([]);
});

it("still describes on GET behind a parser that set req.body = {}", async () => {
  const { base } = await listen(async (req) => void (req.body = {}));
  const res = await fetch(base, { headers: await signedGet(KEY, base) });
  expect(await res.json()).toMatchObject({ appId: "shop", url: base });
});

it("reads the stream when a parser skipped the request (req.body = {}, stream untouched)", async () => {
  const { base, ran } = await listen(async (req) => void (req.body = {}));
  const body = JSON.stringify(request());
  const res = await fetch(`${base}?fnId=fulfil`, { method: "POST", body, headers: { [HEADERS.signature]: await signInvocation(KEY, `${base}?fnId=fulfil`, body) } });
  expect(res.status).toBe(200);
  expect(ran).toEqual(["body"]);
});

it("on HTTP/2 answers an unread, unsigned POST with 401 and no warning (HTTP/2 has no connection header)", async () => {
  const client = new Stepwise({ id: "shop", signingKey: KEY });
  const fn = client.createFunction({ id: "fulfil", triggers: [] }, async () => "ok");
  const handler = serve({ client, functions: [fn] });
  const warnings: string[] = [];
  const onWarning = (warning: Error) => void warnings.push(`${warning.name}: ${warning.message}`);
  process.on("warning", onWarning);
  const h2server = createHttp2Server((req, res) => void handler(req as unknown as NodeRequest, res as unknown as ServerResponse));
  await new Promise<void>((resolve) => h2server.listen(0, "127.0.0.1", resolve));
  const session = connectHttp2(`http://127.0.0.1:${(h2server.address() as AddressInfo).port}`);
  try {
    const status = await new Promise<number>((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ":path": "/api/durable?fnId=fulfil", "content-type": "application/json" });
      let code = 0;
      stream.on("response", (headers) => (code = Number(headers[":status"])));
      stream.on("close", () => resolve(code));
      stream.on("error", reject);
      stream.resume();
      stream.end("{}");
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(status).toBe(401);
    expect(warnings).toEqual([]);
  } finally {
    process.off("warning", onWarning);
    session.close();
    await new Promise<void>((resolve) => h2server.close(() => resolve()));
  }
});

/** A request body as Node's stream, fed by hand: `headers` and `complete` as an IncomingMessage has them. */
function bodyStream(): PassThrough & { headers: Record<string, string>; complete: boolean; rawBody?: unknown } {
  return Object.assign(new PassThrough(), { headers: {}, complete: false });
}

it("keeps nothing of a body refused as too large, whoever drains the rest", async () => {
  const stream = bodyStream();
  const read = readBytesCapped(stream as unknown as NodeRequest, 10, true);
  stream.write("123456");
  stream.write("7890ab");
  expect(await read).toBeNull();
  // A drain after the refusal (as @hono/node-server's once the answer is out) reads to the end.
  stream.on("data", () => {});
  stream.resume();
  stream.end("cdef");
  await new Promise((resolve) => stream.once("end", resolve));
  expect(stream.rawBody).toBeUndefined();
});

it("gives a reader that subscribes mid-body what was read before it, then the rest, and keeps the whole body", async () => {
  const stream = bodyStream();
  const read = readBytesCapped(stream as unknown as NodeRequest, 1_000, true);
  stream.write("first,");
  await new Promise((resolve) => setImmediate(resolve));
  // A late reader as Node's Readable.toWeb is one: it pauses the stream, then listens.
  const late: string[] = [];
  stream.pause();
  stream.on("data", (chunk: Buffer) => late.push(chunk.toString()));
  stream.end("second");
  expect(Buffer.from((await read)!).toString()).toBe("first,second");
  expect(late.join("")).toBe("first,second");
  expect(String(stream.rawBody)).toBe("first,second");
});
