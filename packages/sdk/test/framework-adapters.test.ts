/**
 * The shared adapter suite through each framework's real server (Express, Fastify, Koa, h3 1 and
 * 2 on Node), and through the route exports of the frameworks that build their servers themselves
 * (SvelteKit, Astro, React Router), called with the event shapes those frameworks pass.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import expressV4 from "express-v4";
import Fastify from "fastify";
import FastifyV4 from "fastify-v4";
import { H3, readBody } from "h3";
import { toNodeHandler } from "h3/node";
import { createApp, eventHandler, readRawBody, toNodeListener } from "h3-v1";
import Koa from "koa";
import { HEADERS } from "@stepwise/protocol";
import { describe, expect, it, vi } from "vitest";
import { serve as serveAstro } from "../src/adapters/astro.ts";
import { serve as serveExpress } from "../src/adapters/express.ts";
import { serve as serveFastify } from "../src/adapters/fastify.ts";
import { serve as serveH3 } from "../src/adapters/h3.ts";
import { serve as serveKoa } from "../src/adapters/koa.ts";
import { serve as serveReactRouter } from "../src/adapters/react-router.ts";
import { serve as serveSvelteKit } from "../src/adapters/sveltekit.ts";
import { Stepwise } from "../src/index.ts";
import { testAdapter, type Mounted } from "./adapter-suite.ts";
import { request, signInvocation, TRIGGER } from "./helpers.ts";

const PUBLIC_URL = "https://shop.example.com/api/durable";

/** Listens on a free loopback port; the suite calls `path` there. */
async function listening(server: Server, path = "/api/durable"): Promise<Mounted> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${path}`,
    call: (request) => fetch(request),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

testAdapter({
  name: "express",
  mount: (options) => {
    const app = express();
    app.all("/api/durable", serveExpress(options));
    return listening(createServer(app));
  },
});

testAdapter({
  name: "express 4",
  mount: (options) => {
    const app = expressV4();
    app.all("/api/durable", serveExpress(options));
    return listening(createServer(app));
  },
});

testAdapter({
  name: "express, under a mounted router",
  mount: (options) => {
    const app = express();
    const router = express.Router();
    router.all("/durable", serveExpress(options));
    app.use("/api", router);
    return listening(createServer(app));
  },
});

/** A Fastify app (of either major version) with the plugin registered by `register`, listening. */
async function fastifyServer(app: ReturnType<typeof Fastify> | ReturnType<typeof FastifyV4>, register: () => PromiseLike<unknown>, path: string): Promise<Mounted> {
  await register();
  await app.listen({ port: 0, host: "127.0.0.1" });
  const { port } = app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}${path}`, call: (request) => fetch(request), close: () => app.close() };
}

testAdapter({
  name: "fastify (a plugin with its own body parser)",
  mount: (options) => {
    const app = Fastify();
    return fastifyServer(app, () => app.register(serveFastify(options)), "/api/durable");
  },
});

testAdapter({
  name: "fastify 4.0 (the oldest it supports)",
  mount: (options) => {
    const app = FastifyV4();
    return fastifyServer(app, () => app.register(serveFastify(options)), "/api/durable");
  },
});

testAdapter({
  name: "fastify, registered under a prefix with a path",
  mount: (options) => {
    const app = Fastify();
    return fastifyServer(app, () => app.register(serveFastify({ ...options, path: "/durable" }), { prefix: "/v1" }), "/v1/durable");
  },
});

/**
 * A Koa body parser, loaded without its types: @koa/bodyparser's and koa-body's declare `body`
 * and `rawBody` on Node's IncomingMessage for the whole program.
 */
async function koaParser(name: "@koa/bodyparser" | "koa-body", options: object): Promise<Koa.Middleware> {
  const loaded = (await import(name as string)) as Record<string, (options: object) => Koa.Middleware>;
  return loaded[name === "koa-body" ? "koaBody" : "bodyParser"]!(options);
}

/** A Koa app: `parser` first if given, then serve() as a middleware, then the app's own page. */
function koaApp(options: Parameters<typeof serveKoa>[0], parser?: Koa.Middleware): Koa {
  const app = new Koa();
  if (parser) app.use(parser);
  app.use(serveKoa(options));
  app.use(async (ctx) => void (ctx.body = "the app's own page"));
  return app;
}

testAdapter({ name: "koa", mount: (options) => listening(createServer(koaApp(options).callback())) });

testAdapter({
  name: "koa, on a route of its own (path: null)",
  mount: (options) => {
    const app = new Koa();
    const handler = serveKoa({ ...options, path: null });
    // What a router does: only its route's requests reach the handler.
    app.use(async (ctx, next) => (ctx.path === "/hooks/durable" ? handler(ctx, next) : next()));
    return listening(createServer(app.callback()), "/hooks/durable");
  },
});

testAdapter({
  name: "h3 2 on Node (srvx's request)",
  mount: (options) => {
    const app = new H3();
    app.all("/api/durable", serveH3(options));
    return listening(createServer(toNodeHandler(app)));
  },
});

testAdapter({
  name: "h3 2 through app.fetch (Workers, Bun, Deno)",
  mount: async (options) => {
    const app = new H3();
    app.all("/api/durable", serveH3(options));
    return { url: PUBLIC_URL, call: async (request) => app.fetch(request) };
  },
});

testAdapter({
  name: "h3 1 on Node (Nuxt 3 and 4, Nitro 2)",
  mount: (options) => {
    const app = createApp();
    app.use("/api/durable", eventHandler(serveH3(options)));
    return listening(createServer(toNodeListener(app)));
  },
});

testAdapter({
  name: "sveltekit (+server.ts)",
  mount: async (options) => {
    const routes = serveSvelteKit(options);
    // SvelteKit's RequestEvent carries much more; the handler reads `request` and `platform`.
    return { url: PUBLIC_URL, call: (request) => routes[request.method as "GET" | "POST" | "PUT"]({ request, platform: undefined }) };
  },
});

testAdapter({
  name: "astro (an on-demand endpoint)",
  mount: async (options) => {
    const routes = serveAstro(options);
    return { url: PUBLIC_URL, call: (request) => routes[request.method as "GET" | "POST" | "PUT"]({ request, locals: {} }) };
  },
});

testAdapter({
  name: "react router (a resource route's loader and action)",
  mount: async (options) => {
    const { loader, action } = serveReactRouter(options);
    return { url: PUBLIC_URL, call: (request) => (request.method === "GET" ? loader : action)({ request, context: {} }) };
  },
});

describe("framework specifics", () => {
  const client = new Stepwise({ id: "shop", signingKey: "framework-key" });
  const fn = client.createFunction({ id: "fulfil", triggers: [] }, async () => "done");

  it("fastify: the plugin's raw body parser stays in its scope; the app's own JSON routes still parse", async () => {
    const app = Fastify();
    app.post("/orders", async (request) => ({ parsed: request.body }));
    await app.register(serveFastify({ client, functions: [fn] }));
    const orders = await app.inject({ method: "POST", url: "/orders", payload: { id: 7 } });
    expect(orders.json()).toEqual({ parsed: { id: 7 } });
    const unsigned = await app.inject({ method: "POST", url: "/api/durable?fnId=fulfil", payload: { id: 7 } });
    expect(unsigned.statusCode).toBe(401);
    await app.close();
  });

  /** POSTs a signed invocation of `fulfil` to `url`. */
  const invoke = async (url: string, signal?: AbortSignal) => {
    const body = JSON.stringify(request([], { event: TRIGGER, events: [TRIGGER] }));
    const target = `${url}?fnId=fulfil`;
    const headers = { "content-type": "application/json", [HEADERS.signature]: await signInvocation("framework-key", target, body) };
    return fetch(target, { method: "POST", headers, body, ...(signal && { signal }) });
  };

  const parsingApps: Array<[string, () => Promise<Server>]> = [
    [
      "express: behind express.json({ verify }) for the whole app",
      async () => {
        const app = express();
        app.use(express.json({ verify: (req, _res, buf) => void ((req as unknown as { rawBody?: Buffer }).rawBody = buf) }));
        app.all("/api/durable", serveExpress({ client, functions: [fn] }));
        return createServer(app);
      },
    ],
    ["koa: behind @koa/bodyparser", async () => createServer(koaApp({ client, functions: [fn] }, await koaParser("@koa/bodyparser", { enableTypes: ["json", "text"] })).callback())],
    ["koa: behind koa-body with includeUnparsed", async () => createServer(koaApp({ client, functions: [fn] }, await koaParser("koa-body", { includeUnparsed: true })).callback())],
    [
      "h3 1: behind a handler that read the body with readRawBody",
      async () => {
        const app = createApp();
        app.use(eventHandler(async (event) => void (event.method === "POST" && (await readRawBody(event)))));
        app.use("/api/durable", eventHandler(serveH3({ client, functions: [fn] })));
        return createServer(toNodeListener(app));
      },
    ],
  ];
  it.each(parsingApps)("%s, the raw body the parser kept is what is verified", async (_name, app) => {
    const mounted = await listening(await app());
    try {
      const res = await invoke(mounted.url);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ type: "completed", output: "done" });
    } finally {
      await mounted.close?.();
    }
  });

  it("express: a body parsed without its bytes is answered 500 with the way to keep them", async () => {
    const app = express();
    app.use(express.json());
    app.all("/api/durable", serveExpress({ client, functions: [fn] }));
    const mounted = await listening(createServer(app));
    try {
      const res = await invoke(mounted.url);
      expect(res.status).toBe(500);
      expect(((await res.json()) as { error: string }).error).toMatch(/express\.raw|rawBody/);
    } finally {
      await mounted.close?.();
    }
  });

  /** Apps where something before serve() read the body and kept nothing: each must answer, not hang. */
  const consumingApps: Array<[string, () => Promise<Server>]> = [
    [
      "express, after a middleware that read the stream",
      async () => {
        const app = express();
        app.use((req, _res, next) => void (req.on("data", () => {}), req.on("end", () => next())));
        app.all("/api/durable", serveExpress({ client, functions: [fn] }));
        return createServer(app);
      },
    ],
    [
      "koa, after a middleware that read the stream",
      async () => {
        const app = new Koa();
        app.use(async (ctx, next) => (await new Promise((resolve) => (ctx.req.on("data", () => {}), ctx.req.on("end", resolve))), next()));
        app.use(serveKoa({ client, functions: [fn] }));
        return createServer(app.callback());
      },
    ],
    [
      "h3 2, after a handler that read the body with readBody",
      async () => {
        const app = new H3();
        app.use(async (event, next) => (await readBody(event), next()));
        app.all("/api/durable", serveH3({ client, functions: [fn] }));
        return createServer(toNodeHandler(app));
      },
    ],
  ];
  it.each(consumingApps)("%s: answered 500 saying how to keep the body, at once", async (_name, app) => {
    const mounted = await listening(await app());
    try {
      const res = await invoke(mounted.url, AbortSignal.timeout(5_000));
      expect(res.status).toBe(500);
      expect(((await res.json()) as { error: string }).error).toMatch(/raw request body .* Mount serve\(\) before/);
    } finally {
      await mounted.close?.();
    }
  });

  it("koa: the middleware answers on its path only; the app's other requests pass on", async () => {
    const mounted = await listening(createServer(koaApp({ client, functions: [fn] }).callback()));
    try {
      expect(await (await fetch(mounted.url.replace("/api/durable", "/about"))).text()).toBe("the app's own page");
      expect((await fetch(mounted.url)).status).toBe(200);
    } finally {
      await mounted.close?.();
    }
  });

  it("sveltekit, astro, react router: a Worker's bindings are read for the settings", async () => {
    // Not from the process's environment: only the bindings say dev mode.
    vi.stubEnv("STEPWISE_DEV", "");
    const devClient = new Stepwise({ id: "shop" });
    const options = { client: devClient, functions: [devClient.createFunction({ id: "fulfil", triggers: [] }, async () => "done")] };
    // In dev mode (a binding, not process.env) a GET describes the functions to anyone.
    const env = { STEPWISE_DEV: "1" };
    const get = () => new Request(PUBLIC_URL);
    const answers = [
      await serveSvelteKit(options).GET({ request: get(), platform: { env } }),
      await serveAstro(options).GET({ request: get(), locals: { runtime: { env } } }),
      await serveReactRouter(options).loader({ request: get(), context: { cloudflare: { env } } }),
    ];
    for (const answer of answers) expect(await answer.json()).toMatchObject({ appId: "shop", functions: [{ id: "fulfil" }] });
    vi.unstubAllEnvs();
  });
});
