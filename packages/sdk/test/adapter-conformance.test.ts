/** The shared adapter suite, run against every `serve()` adapter and the request shapes each meets. */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { serve as serveHonoNode, type ServerType } from "@hono/node-server";
import { HEADERS } from "@stepwise/protocol";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { describe, expect, it } from "vitest";
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
      const client = new Stepwise({ id: "shop", signingKey: KEY });
      const fn = client.createFunction({ id: "fulfil", triggers: [] }, async ({ event }) => (event.data as { note: string }).note.length);
      const mounted = await honoNodeServer({ client, functions: [fn] }, prelude);
      try {
        const event = { ...TRIGGER, data: { orderId: "o1", note: "x".repeat(bytes) } };
        const body = JSON.stringify(request([], { event, events: [event] }));
        const url = `${mounted.url}?fnId=fulfil`;
        const headers = { "content-type": "application/json", [HEADERS.signature]: await signInvocation(KEY, url, body) };
        const res = await fetch(url, { method: "POST", body, headers, signal: AbortSignal.timeout(10_000) });
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual({ type: "completed", output: bytes });
      } finally {
        await mounted.close?.();
      }
    });
  }
});
