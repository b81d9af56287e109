/** Each adapter hands the same Web Request to the core and maps the answer back. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { HEADERS } from "@stepwise/protocol";
import { Hono } from "hono";
import { afterEach, describe, expect, it } from "vitest";
import { serve as serveFetch } from "../src/adapters/fetch.ts";
import { serve as serveHono } from "../src/adapters/hono.ts";
import { serve as serveNode } from "../src/adapters/node.ts";
import { Stepwise } from "../src/index.ts";
import { request, signedGet, signInvocation } from "./helpers.ts";

const KEY = "adapter-key";

function app() {
  const client = new Stepwise({ id: "shop", signingKey: KEY });
  const ran: string[] = [];
  const fn = client.createFunction({ id: "fulfil", triggers: [{ event: "order/created" }] }, async ({ step }) => {
    ran.push("body");
    return step.run("a", () => "A");
  });
  return { client, fn, ran };
}

/** An invocation of `fulfil`, signed for `url`. */
async function signedInit(url: string): Promise<RequestInit> {
  const body = JSON.stringify(request());
  return { method: "POST", body, headers: { "content-type": "application/json", [HEADERS.signature]: await signInvocation(KEY, url, body) } };
}

describe("hono adapter", () => {
  it("serves GET and signed POST on one route", async () => {
    const { client, fn, ran } = app();
    const hono = new Hono();
    hono.on(["GET", "POST", "PUT"], "/api/durable", serveHono({ client, functions: [fn] }));
    const described = await hono.request("http://localhost/api/durable", { headers: await signedGet(KEY, "http://localhost/api/durable") });
    expect(await described.json()).toMatchObject({ appId: "shop", url: "http://localhost/api/durable", functions: [{ id: "fulfil" }] });
    const invoked = await hono.request("http://localhost/api/durable?fnId=fulfil", await signedInit("http://localhost/api/durable?fnId=fulfil"));
    expect(invoked.status).toBe(206);
    expect(await invoked.json()).toEqual({ type: "ops", ops: [{ op: "step-ran", id: "a", name: "a", position: 0, output: "A" }] });
    expect(ran).toEqual(["body"]);
  });

  it("reads settings from the Worker bindings in c.env", async () => {
    const client = new Stepwise({ id: "shop" });
    const fn = client.createFunction({ id: "fulfil", triggers: [] }, async () => "done");
    const hono = new Hono<{ Bindings: { STEPWISE_SIGNING_KEY: string } }>();
    hono.post("/api/durable", serveHono({ client, functions: [fn] }));
    const res = await hono.request("http://localhost/api/durable?fnId=fulfil", await signedInit("http://localhost/api/durable?fnId=fulfil"), { STEPWISE_SIGNING_KEY: KEY });
    expect(await res.json()).toEqual({ type: "completed", output: "done" });
  });
});

describe("node adapter", () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

  it("reads the raw body, answers with status, headers and JSON", async () => {
    const { client, fn, ran } = app();
    const handler = serveNode({ client, functions: [fn] });
    server = createServer((req, res) => void handler(req, res));
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const base = `http://127.0.0.1:${port}/api/durable`;
    const invoked = await fetch(`${base}?fnId=fulfil`, await signedInit(`${base}?fnId=fulfil`));
    expect(invoked.status).toBe(206);
    expect(invoked.headers.get(HEADERS.sdk)).toBe("stepwise-js/0.1.0");
    expect(await invoked.json()).toMatchObject({ ops: [{ op: "step-ran", output: "A" }] });
    const described = await fetch(`${base}?x=1`, { headers: await signedGet(KEY, `${base}?x=1`) });
    expect(await described.json()).toMatchObject({ url: base });
    const tampered = await fetch(`${base}?fnId=fulfil`, { ...(await signedInit(`${base}?fnId=fulfil`)), body: JSON.stringify(request([], { targetStep: "a" })) });
    expect(tampered.status).toBe(401);
    expect(ran).toEqual(["body"]);
  });
});

describe("fetch adapter", () => {
  it("takes a Worker's env interface, bindings and all", async () => {
    interface WorkerEnv {
      STEPWISE_SIGNING_KEY: string;
      QUEUE: { send(message: unknown): Promise<void> };
    }
    const client = new Stepwise({ id: "shop" });
    const fn = client.createFunction({ id: "fulfil", triggers: [] }, async ({ event }) => event.id);
    const handler = serveFetch({ client, functions: [fn] });
    const env: WorkerEnv = { STEPWISE_SIGNING_KEY: KEY, QUEUE: { send: async () => {} } };
    const res = await handler(new Request("https://worker.example/api/durable?fnId=fulfil", await signedInit("https://worker.example/api/durable?fnId=fulfil")), env);
    expect(await res.json()).toEqual({ type: "completed", output: "evt-1" });
  });
});
