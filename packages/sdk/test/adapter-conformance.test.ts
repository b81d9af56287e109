/** The shared adapter suite, run against every `serve()` adapter and the request shapes each meets. */
import { createServer, request as httpRequest, type IncomingMessage } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { serve as serveHonoNode, type ServerType } from "@hono/node-server";
import { HEADERS } from "@stepwise/protocol";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { describe, expect, it, vi } from "vitest";
import { serve as serveFetch } from "../src/adapters/fetch.ts";
import { serve as serveHono } from "../src/adapters/hono.ts";
import { serve as serveLambda, type LambdaHttpEvent } from "../src/adapters/lambda.ts";
import { serve as serveNext } from "../src/adapters/next.ts";
import { serve as serveNode, type NodeRequest } from "../src/adapters/node.ts";
import type { ServeOptions } from "../src/serve.ts";
import { Stepwise } from "../src/index.ts";
import { KEY, testAdapter, type Mounted } from "./adapter-suite.ts";
import { request, signInvocation, TRIGGER } from "./helpers.ts";
import { fromResult, functionUrlEvent, httpApiV2Event, toRestApiV1Event, toV2Event, type BodyEncoding } from "./fixtures/lambda-events.ts";

const PUBLIC_URL = "https://shop.example.com/api/durable";

testAdapter({
  name: "fetch (Workers, Deno, Bun)",
  mount: async (options) => ({ url: PUBLIC_URL, call: (request) => serveFetch(options)(request) }),
});

testAdapter({
  name: "hono",
  mount: async (options) => {
    const app = new Hono();
    app.on(["GET", "POST", "PUT"], "/api/durable", serveHono(options));
    return { url: PUBLIC_URL, call: async (request) => app.request(request) };
  },
});

testAdapter({
  name: "next (App Router route handlers)",
  mount: async (options) => {
    const { GET, POST, PUT } = serveNext(options);
    const routes: Record<string, (request: Request) => Promise<Response>> = { GET, POST, PUT };
    return { url: PUBLIC_URL, call: (request) => routes[request.method]!(request) };
  },
});

/** Serves the Node adapter on a real port; `prelude` plays an Express body parser. */
async function nodeServer(options: ServeOptions, prelude?: (req: NodeRequest) => Promise<void>): Promise<Mounted> {
  const handler = serveNode(options);
  const server = createServer((req, res) => void (async () => {
    await prelude?.(req);
    await handler(req, res);
  })());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/api/durable`,
    call: (request) => fetch(request),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function readStream(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

testAdapter({ name: "node http", mount: (options) => nodeServer(options) });

testAdapter({
  name: "node, Express-style, after express.raw() (req.body is a Buffer)",
  mount: (options) => nodeServer(options, async (req) => void (req.body = await readStream(req))),
});

testAdapter({
  name: "node, Express-style, after express.json({ verify }) (req.rawBody kept)",
  mount: (options) =>
    nodeServer(options, async (req) => {
      const raw = await readStream(req);
      req.rawBody = raw;
      try {
        req.body = JSON.parse(raw.toString("utf8"));
      } catch {
        req.body = {};
      }
    }),
});

const lambdaVariants: { name: string; url: string; encoding: BodyEncoding; toEvent: (request: Request, encoding: BodyEncoding) => Promise<LambdaHttpEvent> }[] = [
  { name: "API Gateway REST API (v1)", url: "https://70ixmpl4fl.execute-api.us-east-2.amazonaws.com/Prod/api/durable", encoding: "text", toEvent: toRestApiV1Event },
  { name: "API Gateway REST API (v1), base64 body", url: "https://70ixmpl4fl.execute-api.us-east-2.amazonaws.com/Prod/api/durable", encoding: "base64", toEvent: toRestApiV1Event },
  { name: "API Gateway HTTP API (v2), base64 body", url: "https://id.execute-api.us-east-1.amazonaws.com/api/durable", encoding: "base64", toEvent: (request, encoding) => toV2Event(httpApiV2Event, request, encoding) },
  { name: "Lambda Function URL", url: "https://abcdefg.lambda-url.us-west-2.on.aws/api/durable", encoding: "text", toEvent: (request, encoding) => toV2Event(functionUrlEvent, request, encoding) },
  { name: "Lambda Function URL, base64 body", url: "https://abcdefg.lambda-url.us-west-2.on.aws/api/durable", encoding: "base64", toEvent: (request, encoding) => toV2Event(functionUrlEvent, request, encoding) },
];

for (const variant of lambdaVariants) {
  testAdapter({
    name: `lambda, ${variant.name}`,
    mount: async (options) => {
      const handler = serveLambda(options);
      return { url: variant.url, call: async (request) => fromResult(await handler(await variant.toEvent(request, variant.encoding), {})) };
    },
  });
}

/**
 * Hono served on a real port by @hono/node-server, where the adapter reads Node's request itself
 * while nothing else has; `prelude` plays a middleware (one that returns nothing goes on in the same tick).
 */
async function honoNodeServer(options: ServeOptions, prelude?: (c: Context) => Promise<void> | void): Promise<Mounted> {
  const app = new Hono();
  if (prelude) app.use("/api/durable", (c, next) => {
    const done = prelude(c);
    return done ? done.then(next) : next();
  });
  app.on(["GET", "POST", "PUT"], "/api/durable", serveHono(options));
  const server = await new Promise<ServerType>((resolve) => {
    const started: ServerType = serveHonoNode({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(started));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/api/durable`,
    call: (request) => fetch(request),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

testAdapter({ name: "hono on Node (@hono/node-server)", mount: (options) => honoNodeServer(options) });

testAdapter({
  name: "hono on Node, after a middleware read the body (c.req.text())",
  mount: (options) => honoNodeServer(options, async (c) => void (c.req.method === "POST" && (await c.req.text()))),
});

/** An app whose one function answers the length of its event's note. */
function noteApp(): ServeOptions {
  const client = new Stepwise({ id: "shop", signingKey: KEY });
  const fn = client.createFunction({ id: "fulfil", triggers: [] }, async ({ event }) => (event.data as { note: string }).note.length);
  return { client, functions: [fn] };
}

/** A signed invocation of that function to `url`, its note `bytes` long. */
async function noteInvocation(url: string, bytes: number): Promise<{ body: string; headers: Record<string, string> }> {
  const event = { ...TRIGGER, data: { orderId: "o1", note: "x".repeat(bytes) } };
  const body = JSON.stringify(request([], { event, events: [event] }));
  return { body, headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), [HEADERS.signature]: await signInvocation(KEY, url, body) } };
}

// Middlewares that touch c.req.raw without reading it (hono/body-limit does, on every request with
// a body) make @hono/node-server build its Request around Node's stream: an adapter that then read
// Node's stream too left large invocations unanswered. Sizes past Node's stream buffers.
describe("hono on Node behind middlewares that touch the raw request", () => {
  const middlewares: Array<[string, (c: Context) => Promise<void> | void]> = [
    ["hono/body-limit", async (c) => void (await bodyLimit({ maxSize: 50 * 1024 * 1024 })(c, async () => {}))],
    ["one that reads c.req.raw.signal", async (c) => void c.req.raw.signal],
    // The Request's stream starts reading Node's a few microtasks after this, while the handler already runs.
    ["one that touches c.req.raw.body and goes on in the same tick", (c) => void c.req.raw.body],
  ];
  for (const [name, prelude] of middlewares) {
    it.each([200_000, 1_000_000])(`answers a %i-byte invocation behind ${name}`, { timeout: 20_000 }, async (bytes) => {
      const mounted = await honoNodeServer(noteApp(), prelude);
      try {
        const url = `${mounted.url}?fnId=fulfil`;
        const { body, headers } = await noteInvocation(url, bytes);
        const res = await fetch(url, { method: "POST", body, headers, signal: AbortSignal.timeout(10_000) });
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual({ type: "completed", output: bytes });
      } finally {
        await mounted.close?.();
      }
    });
  }
});

// The adapter reads Node's stream itself when nothing has begun to: what happens around it must
// go as it did through Hono's request.
describe("hono on Node, the body read off Node's stream", () => {
  /** An app whose handler counts the calls that settled; `middleware` runs around it. */
  async function countingServer(middleware: (c: Context, next: () => Promise<void>) => Promise<void>) {
    const handler = serveHono(noteApp());
    const calls = { started: 0, settled: 0 };
    const app = new Hono();
    app.use("/api/durable", middleware);
    app.post("/api/durable", async (c) => {
      calls.started++;
      try {
        return await handler(c);
      } finally {
        calls.settled++;
      }
    });
    const server = await new Promise<ServerType>((resolve) => {
      const started: ServerType = serveHonoNode({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(started));
    });
    const { port } = server.address() as AddressInfo;
    const url = `http://127.0.0.1:${port}/api/durable?fnId=fulfil`;
    return { port, url, calls, invocation: (bytes: number) => noteInvocation(url, bytes), close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  }
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it("ends the call when the client went away before the handler read the body", async () => {
    const app = await countingServer(async (_c, next) => (await sleep(50), next()));
    try {
      const { body, headers } = await app.invocation(200_000);
      const socket = connect(app.port, "127.0.0.1");
      await new Promise((resolve) => socket.once("connect", resolve));
      const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("");
      socket.write(`POST /api/durable?fnId=fulfil HTTP/1.1\r\nhost: 127.0.0.1:${app.port}\r\n${head}\r\n${body.slice(0, 1_000)}`);
      await sleep(10);
      socket.destroy();
      await vi.waitFor(() => expect(app.calls).toEqual({ started: 1, settled: 1 }), { timeout: 5_000 });
    } finally {
      await app.close();
    }
  });

  // A second reader that starts mid-body: @hono/node-server's Request (pausing Node's stream
  // first), or a middleware on Node's stream itself (not pausing). Each is given the whole body.
  const lateReaders: Array<[string, (c: Context) => () => Promise<string>]> = [
    ["touches c.req.raw, then reads c.req.text()", (c) => (c.req.raw.signal.addEventListener("abort", () => {}), () => c.req.text())],
    [
      "listens to Node's stream itself",
      (c) => {
        const chunks: Buffer[] = [];
        (c.env as { incoming: IncomingMessage }).incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
        return async () => Buffer.concat(chunks).toString();
      },
    ],
  ];
  it.each(lateReaders)("answers, and leaves the whole body, to a middleware that %s while the body arrives", { timeout: 20_000 }, async (_name, startReading) => {
    let after: string | undefined;
    const app = await countingServer(async (c, next) => {
      const alongside = (async () => (await sleep(10), startReading(c)))();
      const [, read] = await Promise.all([next(), alongside]);
      after = await read();
    });
    try {
      const { body, headers } = await app.invocation(1_000_000);
      const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = httpRequest(app.url, { method: "POST", headers }, (res) => {
          let text = "";
          res.on("data", (chunk) => (text += String(chunk)));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        });
        req.on("error", reject);
        req.setTimeout(10_000, () => req.destroy(new Error("no answer in 10 s")));
        // The body arrives over about 80 ms, as over a real network.
        void (async () => {
          for (let at = 0; at < body.length; at += 65_536) {
            req.write(body.slice(at, at + 65_536));
            await sleep(5);
          }
          req.end();
        })();
      });
      expect(answer).toEqual({ status: 200, text: JSON.stringify({ type: "completed", output: 1_000_000 }) });
      // The late reader was given the bytes read before it, then the rest.
      expect(after?.length).toBe(body.length);
      expect(after === body).toBe(true);
    } finally {
      await app.close();
    }
  });

  it("leaves the body to a middleware that reads it after the handler", async () => {
    let after: string | undefined;
    const app = await countingServer(async (c, next) => {
      await next();
      after = await c.req.text();
    });
    try {
      const { body, headers } = await app.invocation(200_000);
      const res = await fetch(app.url, { method: "POST", body, headers });
      expect(res.status).toBe(200);
      expect(after).toBe(body);
    } finally {
      await app.close();
    }
  });
});
