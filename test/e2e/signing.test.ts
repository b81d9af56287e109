/**
 * Request signing outside dev mode, over real HTTP: the executor signs every invocation, the
 * app verifies it (current or next key), refuses what is unsigned, tampered or stale, and
 * the executor refuses events without the event key and registrations without the signing key.
 */
import { PROTOCOL_VERSION, requestTarget, sign, type InvokeRequest } from "@stepwise/protocol";
import { Stepwise } from "@stepwise/sdk";
import { serve as serveFetch } from "@stepwise/sdk/fetch";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { silentLogger } from "@stepwise/engine";
import { startServer, type RunningServer } from "@stepwise/server";
import { PostgresStore } from "@stepwise/store-postgres";
import { freshPglite } from "../support/pglite.ts";
import { startStack, type Stack } from "../support/stack.ts";

const bodies: string[] = [];
const schemas = { "test/signed": z.object({ who: z.string() }) };

function app(keys: { signingKey: string; signingKeyNext?: string }) {
  const client = new Stepwise({ id: "signed", dev: false, schemas, ...keys });
  const fn = client.createFunction({ id: "signed", triggers: [{ event: "test/signed" }], retries: 0 }, async ({ event, step }) => {
    bodies.push(event.data.who);
    return step.run("hello", () => `hello ${event.data.who}`);
  });
  return { client, functions: [fn] };
}

/** The signature the executor would send with `body` to `url`. */
function signFor(key: string, url: string, body: string, nowMs?: number): Promise<string> {
  return sign(key, { method: "POST", target: requestTarget(url), body }, nowMs);
}

function invocation(who: string): string {
  const request: InvokeRequest = {
    version: PROTOCOL_VERSION,
    run: { id: "r1", appId: "signed", functionId: "signed", attempt: 0 },
    event: { id: "e1", name: "test/signed", data: { who }, ts: Date.now() },
    events: [],
    steps: [],
  };
  return JSON.stringify(request);
}

describe("signed requests (production mode)", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      store: "pglite",
      ...app({ signingKey: "key-current" }),
      executor: { dev: false, signingKey: "key-current", eventKey: "event-key", apiKey: "api-key" },
    });
  });
  afterAll(async () => stack?.close());

  it("runs functions when executor and app share the signing key", async () => {
    const [id] = await stack.send({ name: "test/signed", data: { who: "Ada" } });
    expect((await stack.waitForRun(id!)).output).toBe("hello Ada");
  });

  it.each([
    ["missing", async (body: string) => ({}), /Missing x-stepwise-signature/],
    ["tampered", async (body: string, url: string) => ({ "x-stepwise-signature": await signFor("key-current", url, body.replace("Mallory", "Alice")) }), /does not match/],
    ["stale", async (body: string, url: string) => ({ "x-stepwise-signature": await signFor("key-current", url, body, Date.now() - 10 * 60_000) }), /Stale signature/],
    ["signed with another key", async (body: string, url: string) => ({ "x-stepwise-signature": await signFor("wrong-key", url, body) }), /does not match/],
  ])("the app refuses a %s signature with 401 and does not run the function", async (_, headers, message) => {
    const before = bodies.length;
    const body = invocation("Mallory");
    const url = `${stack.appUrl}?fnId=signed`;
    const response = await fetch(url, { method: "POST", body, headers: await headers(body, url) });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: string }).error).toMatch(message);
    expect(bodies.length).toBe(before);
  });

  it("the app accepts a correctly signed invocation", async () => {
    const body = invocation("Grace");
    const url = `${stack.appUrl}?fnId=signed`;
    const response = await fetch(url, { method: "POST", body, headers: { "x-stepwise-signature": await signFor("key-current", url, body) } });
    expect(response.status).toBe(206);
    expect(await response.json()).toMatchObject({ type: "ops", ops: [{ op: "step-ran", id: "hello", output: "hello Grace" }] });
  });

  it.each([
    ["events", "/api/events", { name: "test/signed", data: { who: "x" } }],
    ["signals", "/api/signals", { signal: "approval/1" }],
  ])("refuses %s without the event key, or with a wrong one", async (_, path, payload) => {
    const url = `${stack.executor.url}${path}`;
    const body = JSON.stringify(payload);
    const missing = await fetch(url, { method: "POST", body });
    expect(missing.status).toBe(401);
    expect(((await missing.json()) as { error: string }).error).toMatch(/Missing event key/);
    const wrong = await fetch(url, { method: "POST", body, headers: { authorization: "Bearer nope" } });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: string }).error).toMatch(/Invalid event key/);
    // With the key, a signal nobody waits for is a 404, not a 401: the key was the only problem.
    if (path === "/api/signals") {
      const keyed = await fetch(url, { method: "POST", body, headers: { authorization: "Bearer event-key" } });
      expect(keyed.status).toBe(404);
    }
  });

  it("keeps runs private: the run API needs the API key, which no app holds", async () => {
    const [id] = await stack.send({ name: "test/signed", data: { who: "Private" } });
    const run = await stack.waitForRun(id!);
    for (const path of [`/api/runs/${run.id}`, `/api/events/${id}/runs`, "/api/functions", "/api/runs", "/api/runs?limit=1"]) {
      const anonymous = await fetch(`${stack.executor.url}${path}`);
      expect(anonymous.status).toBe(401);
      expect(((await anonymous.json()) as { error: string }).error).toMatch(/STEPWISE_API_KEY/);
      // The keys an app holds open nothing here.
      for (const key of ["event-key", "key-current"]) {
        const wrong = await fetch(`${stack.executor.url}${path}`, { headers: { authorization: `Bearer ${key}` } });
        expect(wrong.status).toBe(401);
      }
    }
    for (const key of [undefined, "key-current"]) {
      const cancel = await fetch(`${stack.executor.url}/api/runs/${run.id}/cancel`, { method: "POST", headers: key ? { authorization: `Bearer ${key}` } : {} });
      expect(cancel.status).toBe(401);
    }
    const allowed = await fetch(`${stack.executor.url}/api/runs/${run.id}`, { headers: { authorization: "Bearer api-key" } });
    expect(allowed.status).toBe(200);
    const listed = await fetch(`${stack.executor.url}/api/runs?limit=1`, { headers: { authorization: "Bearer api-key" } });
    expect(listed.status).toBe(200);
  });

  it.each([
    ["a cloud metadata address", "http://169.254.169.254/latest/meta-data/", /metadata address/],
    ["a file: URL", "file:///etc/passwd", /http:\/\/ or https:\/\//],
  ])("refuses a registration naming %s, and keeps the app's URL", async (_, url, message) => {
    const body = JSON.stringify({ appId: "signed", url, sdk: "stepwise-js/0.1.0", functions: [] });
    const target = `${stack.executor.url}/api/apps`;
    const response = await fetch(target, { method: "POST", body, headers: { "x-stepwise-signature": await sign("key-current", { method: "POST", target: "/api/apps", body }) } });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(message);
    const [id] = await stack.send({ name: "test/signed", data: { who: "Still" } });
    expect((await stack.waitForRun(id!)).output).toBe("hello Still");
  });

  it("refuses an app registration signed with another key, and says why", async () => {
    const impostor = app({ signingKey: "not-the-key" });
    const handler = serveFetch({ ...impostor, serveUrl: "http://127.0.0.1:1/api/durable" });
    const response = await handler(new Request("http://127.0.0.1:1/api/durable", { method: "PUT" }));
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(await response.json())).toMatch(/Signature does not match/);
  });
});

describe("signing key rotation", () => {
  let stack: Stack;
  beforeAll(async () => {
    // The executor already signs with the new key; the app knows it as its next key.
    stack = await startStack({
      store: "pglite",
      ...app({ signingKey: "key-old", signingKeyNext: "key-new" }),
      executor: { dev: false, signingKey: "key-new", signingKeyNext: "key-old", eventKey: "event-key", apiKey: "api-key" },
    });
  });
  afterAll(async () => stack?.close());

  it("keeps runs working while executor and app hold the keys in either order", async () => {
    const [id] = await stack.send({ name: "test/signed", data: { who: "Rotated" } });
    expect((await stack.waitForRun(id!)).output).toBe("hello Rotated");
  });
});

describe("a captured invocation (production mode)", () => {
  const otherBodies: string[] = [];
  let captured: { url: string; signature: string; body: string } | undefined;
  let stack: Stack;
  beforeAll(async () => {
    const { client, functions } = app({ signingKey: "key-current" });
    const other = client.createFunction({ id: "other", triggers: [{ event: "test/other" }], retries: 0 }, async ({ step }) => {
      return step.run("hello", () => void otherBodies.push("ran"));
    });
    stack = await startStack({
      store: "pglite",
      client,
      functions: [...functions, other],
      executor: { dev: false, signingKey: "key-current", eventKey: "event-key", apiKey: "api-key" },
      // What someone on the path between executor and app would see: the first invocation as sent.
      intercept: async (request, toApp) => {
        const body = await request.text();
        if (!captured && request.method === "POST") captured = { url: request.url, signature: request.headers.get("x-stepwise-signature")!, body };
        return toApp(new Request(request.url, { method: request.method, headers: request.headers, body: request.method === "GET" ? undefined : body }));
      },
    });
    const [id] = await stack.send({ name: "test/signed", data: { who: "Eve" } });
    await stack.waitForRun(id!);
  });
  afterAll(async () => stack?.close());

  it("is refused when sent to another function: the signature covers ?fnId=", async () => {
    expect(captured?.url).toMatch(/fnId=signed$/);
    const elsewhere = captured!.url.replace("fnId=signed", "fnId=other");
    const response = await fetch(elsewhere, { method: "POST", body: captured!.body, headers: { "x-stepwise-signature": captured!.signature } });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: string }).error).toMatch(/another method, path or function/);
    expect(otherBodies).toEqual([]);
  });

  it("is refused when replayed to the same function: the app runs each signed request once", async () => {
    const before = bodies.length;
    const response = await fetch(captured!.url, { method: "POST", body: captured!.body, headers: { "x-stepwise-signature": captured!.signature } });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: string }).error).toMatch(/already received/);
    expect(bodies.length).toBe(before);
  });

  it("is refused when its body names another function than the one addressed", async () => {
    const url = `${stack.appUrl}?fnId=other`;
    const body = invocation("Mallory"); // a run of "signed", signed for ?fnId=other
    const response = await fetch(url, { method: "POST", body, headers: { "x-stepwise-signature": await signFor("key-current", url, body) } });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(/for function "signed" but was sent to \?fnId=other/);
    expect(otherBodies).toEqual([]);
  });
});

describe("an app with a key of its own (STEPWISE_APP_SIGNING_KEYS)", () => {
  let stack: Stack;
  beforeAll(async () => {
    // The executor shares "shared-key" with other apps; app "signed" holds only its own key.
    stack = await startStack({
      store: "pglite",
      ...app({ signingKey: "own-key" }),
      executor: { dev: false, signingKey: "shared-key", appSigningKeys: { signed: "own-key" }, eventKey: "event-key", apiKey: "api-key" },
    });
  });
  afterAll(async () => stack?.close());

  const register = async (appId: string, key: string) => {
    const body = JSON.stringify({ appId, url: "https://elsewhere.example/api/durable", sdk: "x", functions: [] });
    return fetch(`${stack.executor.url}/api/apps`, {
      method: "POST",
      body,
      headers: { "x-stepwise-signature": await sign(key, { method: "POST", target: "/api/apps", body }) },
    });
  };

  it("registers with its own key and is invoked signed with it", async () => {
    const [id] = await stack.send({ name: "test/signed", data: { who: "Own" } });
    expect((await stack.waitForRun(id!)).output).toBe("hello Own");
  });

  it("cannot be re-pointed by a holder of the shared key", async () => {
    const response = await register("signed", "shared-key");
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: string }).error).toMatch(/app "signed" has a key of its own/);
    const [id] = await stack.send({ name: "test/signed", data: { who: "Kept" } });
    expect((await stack.waitForRun(id!)).output).toBe("hello Kept");
  });

  it("leaves the shared key for the apps that have none", async () => {
    expect((await register("another-app", "shared-key")).status).toBe(200);
    expect((await register("another-app", "own-key")).status).toBe(401);
  });
});

describe("app URLs on an executor in production mode", () => {
  let server: RunningServer;
  beforeAll(async () => {
    // As `stepwise start` runs by default: no STEPWISE_ALLOW_PRIVATE_APP_URLS.
    server = await startServer({ store: new PostgresStore(await freshPglite()), dev: false, port: 0, signingKey: "key-current", log: silentLogger });
  });
  afterAll(async () => server?.close());

  it.each([
    ["loopback", "http://127.0.0.1:6379/api/durable", 400],
    ["a private network's", "http://10.0.0.8/api/durable", 400],
    ["a public", "https://shop.example/api/durable", 200],
  ])("takes a registration naming a %s address only if the executor may call it", async (_, url, status) => {
    const body = JSON.stringify({ appId: "probe", url, sdk: "x", functions: [] });
    const response = await fetch(`${server.url}/api/apps`, {
      method: "POST",
      body,
      headers: { "x-stepwise-signature": await sign("key-current", { method: "POST", target: "/api/apps", body }) },
    });
    expect(response.status).toBe(status);
    if (status === 400) expect(((await response.json()) as { error: string }).error).toMatch(/STEPWISE_ALLOW_PRIVATE_APP_URLS=1/);
  });
});

describe("redirects from an app", () => {
  let stack: Stack;
  let secretHits = 0;
  let secret: import("node:http").Server;
  beforeAll(async () => {
    const { createServer } = await import("node:http");
    // What a redirect would reach: an address the executor must never call.
    secret = createServer((_req, res) => {
      secretHits++;
      res.end("iam credentials");
    });
    await new Promise<void>((resolve) => secret.listen(0, "127.0.0.1", resolve));
    const secretUrl = `http://127.0.0.1:${(secret.address() as import("node:net").AddressInfo).port}/latest/meta-data/`;
    stack = await startStack({
      store: "pglite",
      ...app({ signingKey: "key-current" }),
      executor: { dev: false, signingKey: "key-current", eventKey: "event-key", apiKey: "api-key" },
      intercept: async (request, toApp) => (request.method === "POST" ? Response.redirect(secretUrl, 302) : toApp(request)),
    });
  });
  afterAll(async () => {
    await stack?.close();
    await new Promise<void>((resolve) => secret.close(() => resolve()));
  });

  it("are not followed: the signed invocation never reaches the redirect's target", async () => {
    const [id] = await stack.send({ name: "test/signed", data: { who: "Redirected" } });
    const run = await stack.waitForRun(id!);
    expect(run.status).toBe("failed");
    expect(run.error?.message).toMatch(/redirect/);
    expect(secretHits).toBe(0);
  });
});

describe("a signed registration replayed", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer({ store: new PostgresStore(await freshPglite()), dev: false, port: 0, signingKey: "key-current", log: silentLogger });
  });
  afterAll(async () => server?.close());

  it("is taken once: a copy sent again within its window cannot put the app back as it was", async () => {
    const body = JSON.stringify({ appId: "replayed", url: "https://shop.example/api/durable", sdk: "x", functions: [] });
    const headers = { "x-stepwise-signature": await sign("key-current", { method: "POST", target: "/api/apps", body }) };
    expect((await fetch(`${server.url}/api/apps`, { method: "POST", body, headers })).status).toBe(200);
    const again = await fetch(`${server.url}/api/apps`, { method: "POST", body, headers });
    expect(again.status).toBe(401);
    expect(((await again.json()) as { error: string }).error).toMatch(/already received \(a replay\)/);
  });
});
