/** The /api/durable endpoint through the fetch adapter: describe, register, signed invocations. */
import { DEV_SIGNING_KEY, FUNCTION_FAILED_EVENT, HEADERS, verify, type AppDescription } from "@stepwise/protocol";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { serve } from "../src/adapters/fetch.ts";
import { Stepwise } from "../src/index.ts";
import { recordingLogger, request, signedGet, signInvocation } from "./helpers.ts";

const KEY = "signing-key-current";
const URL_BASE = "https://shop.example.com/api/durable";
const FULFIL_URL = `${URL_BASE}?fnId=fulfil`;

function setup(options: { signingKey?: string; signingKeyNext?: string; dev?: boolean; fetch?: typeof fetch } = { signingKey: KEY }) {
  const log = recordingLogger();
  const client = new Stepwise({ id: "shop", schemas: { "order/created": z.object({ orderId: z.string() }) }, logger: log.logger, ...options });
  const ran: string[] = [];
  const failures: unknown[] = [];
  const fulfil = client.createFunction(
    {
      id: "fulfil",
      triggers: [{ event: "order/created" }],
      retries: 5,
      cancelOn: [{ event: "order/cancelled", match: "data.orderId" }],
      backoff: { initialMs: 1000 },
      onFailure: async ({ error, event, runId, step }) => {
        const note = await step.run("note", () => `failed ${event.data.orderId}`);
        failures.push({ name: error.name, message: error.message, orderId: event.data.orderId, runId, note });
      },
    },
    async ({ step, event }) => {
      ran.push(event.data.orderId);
      await step.sleep("pause", "1m");
    },
  );
  const plain = client.createFunction({ id: "plain", triggers: [{ event: "ping" }] }, async () => "pong");
  return { client, ran, failures, log, handler: serve({ client, functions: [fulfil, plain] }) };
}

async function post(handler: ReturnType<typeof setup>["handler"], body: string, options: { fnId?: string; key?: string; signature?: string | null; env?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { "content-type": "application/json" };
  const url = `${URL_BASE}?fnId=${options.fnId ?? "fulfil"}`;
  const signature = options.signature === undefined ? await signInvocation(options.key ?? KEY, url, body) : options.signature;
  if (signature !== null) headers[HEADERS.signature] = signature;
  return handler(new Request(url, { method: "POST", headers, body }), options.env);
}

// The machine's own STEPWISE_* variables must not leak into these tests.
beforeEach(() => {
  for (const name of ["STEPWISE_SIGNING_KEY", "STEPWISE_SIGNING_KEY_NEXT", "STEPWISE_DEV", "STEPWISE_SERVE_URL", "STEPWISE_BASE_URL"]) {
    vi.stubEnv(name, "");
  }
});
afterEach(() => vi.unstubAllEnvs());

describe("GET", () => {
  it("describes the app to a signed GET, including the onFailure companion", async () => {
    const { handler } = setup();
    const res = await handler(new Request(`${URL_BASE}?probe=1`, { headers: await signedGet(KEY, `${URL_BASE}?probe=1`) }));
    expect(res.status).toBe(200);
    expect(res.headers.get(HEADERS.sdk)).toBe("stepwise-js/0.1.0");
    expect(await res.json()).toEqual({
      appId: "shop",
      url: URL_BASE,
      sdk: "stepwise-js/0.1.0",
      // It reads back outputs an invocation leaves out: the executor may send them by size.
      features: ["outputs-by-size", "compact-steps"],
      // No version configured: one derived from the functions' configuration.
      version: expect.stringMatching(/^config-[0-9a-f]{16}$/),
      functions: [
        {
          id: "fulfil",
          triggers: [{ event: "order/created" }],
          retries: 5,
          cancelOn: [{ event: "order/cancelled", match: "data.orderId" }],
          backoff: { initialMs: 1000 },
        },
        {
          id: "fulfil-failure",
          triggers: [{ event: FUNCTION_FAILED_EVENT, if: 'event.data.functionId == "shop-fulfil"' }],
          retries: 5,
          onFailureOf: "fulfil",
        },
        { id: "plain", triggers: [{ event: "ping" }], retries: 3 },
      ],
    });
  });

  it("uses STEPWISE_SERVE_URL from the request's env over the request URL", async () => {
    const { handler } = setup();
    const url = "http://10.0.0.5:3000/api/durable";
    const res = await handler(new Request(url, { headers: await signedGet(KEY, url) }), { STEPWISE_SERVE_URL: "https://public.example/api/durable" });
    expect(((await res.json()) as AppDescription).url).toBe("https://public.example/api/durable");
  });

  it.each([
    ["unsigned", async () => ({})],
    ["signed with another key", async () => signedGet("someone-else", URL_BASE)],
    ["signed for another path", async () => signedGet(KEY, "https://shop.example.com/other")],
  ])("tells an %s GET only the app ID and how many functions it has", async (_, headers) => {
    const { handler } = setup();
    const res = await handler(new Request(URL_BASE, { headers: await headers() }));
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toEqual({ appId: "shop", sdk: "stepwise-js/0.1.0", functionCount: 3, message: expect.stringMatching(/signed requests only/) });
    expect(JSON.stringify(body)).not.toContain("order/created");
  });

  it("describes the app to any GET in dev mode (the dev key is public)", async () => {
    const { handler } = setup({ dev: true });
    const res = await handler(new Request(URL_BASE));
    expect(((await res.json()) as AppDescription).functions).toHaveLength(3);
  });

  it("refuses other methods with 405", async () => {
    const { handler } = setup();
    const res = await handler(new Request(URL_BASE, { method: "DELETE" }));
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET, PUT, POST");
  });
});

describe("POST", () => {
  it("runs a correctly signed invocation", async () => {
    const { handler, ran } = setup();
    const res = await post(handler, JSON.stringify(request()));
    expect(res.status).toBe(206);
    expect(res.headers.get(HEADERS.sdk)).toBe("stepwise-js/0.1.0");
    expect(await res.json()).toMatchObject({ type: "ops", ops: [{ op: "sleep", id: "pause", position: 0 }] });
    expect(ran).toEqual(["o1"]);
  });

  it("accepts the next key during a rotation", async () => {
    const { handler, ran } = setup({ signingKey: KEY, signingKeyNext: "next-key" });
    const res = await post(handler, JSON.stringify(request()), { key: "next-key" });
    expect(res.status).toBe(206);
    expect(ran).toEqual(["o1"]);
  });

  it.each([
    ["missing", async () => null, /Missing/],
    ["tampered", async (body: string) => signInvocation(KEY, FULFIL_URL, body.replace('"o1"', '"o2"')), /does not match/],
    ["wrong key", async (body: string) => signInvocation("someone-else", FULFIL_URL, body), /does not match/],
    ["stale", async (body: string) => signInvocation(KEY, FULFIL_URL, body, Date.now() - 10 * 60_000), /Stale/],
    ["another function's", async (body: string) => signInvocation(KEY, `${URL_BASE}?fnId=plain`, body), /does not match/],
    ["another path's", async (body: string) => signInvocation(KEY, `${URL_BASE.replace("/api/durable", "/other")}?fnId=fulfil`, body), /does not match/],
    ["malformed", async () => "v1=abc", /Malformed/],
  ])("rejects a %s signature with 401 without running the function", async (_, signatureFor, message) => {
    const { handler, ran } = setup();
    const body = JSON.stringify(request());
    const res = await post(handler, body, { signature: await signatureFor(body) });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: string }).error).toMatch(message);
    expect(ran).toEqual([]);
  });

  it("answers 400 for a body that is not JSON, or not an invocation", async () => {
    const { handler, ran } = setup();
    const notJson = await post(handler, "{oops");
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: string }).error).toMatch(/not JSON/);
    const wrongShape = await post(handler, JSON.stringify({ ...request(), steps: "none" }));
    expect(wrongShape.status).toBe(400);
    expect(((await wrongShape.json()) as { error: string }).error).toMatch(/steps/);
    expect(ran).toEqual([]);
  });

  it("answers 404 for an unknown function", async () => {
    const { handler } = setup();
    const res = await post(handler, JSON.stringify(request()), { fnId: "nope" });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: string }).error).toContain('"nope"');
  });

  it("answers 500 naming STEPWISE_SIGNING_KEY when no key is set outside dev", async () => {
    const { handler, ran } = setup({});
    const res = await post(handler, JSON.stringify(request()), { key: DEV_SIGNING_KEY });
    expect(res.status).toBe(500);
    expect(((await res.json()) as { error: string }).error).toContain("STEPWISE_SIGNING_KEY");
    expect(ran).toEqual([]);
  });

  it("in dev mode accepts the public dev key, and still needs a signature", async () => {
    const { handler, ran, log } = setup({});
    const env = { STEPWISE_DEV: "1" };
    const body = JSON.stringify(request());
    expect((await post(handler, body, { key: DEV_SIGNING_KEY, env })).status).toBe(206);
    // A second attempt of the run: the executor signs every attempt anew.
    const again = JSON.stringify(request([], { run: { id: "run-1", appId: "shop", functionId: "fulfil", attempt: 1 } }));
    expect((await post(handler, again, { key: DEV_SIGNING_KEY, env })).status).toBe(206);
    expect((await post(handler, body, { signature: null, env })).status).toBe(401);
    expect(ran).toEqual(["o1", "o1"]);
    expect(log.lines.filter((line) => line.includes("dev mode"))).toHaveLength(1);
  });

  it("runs a signed invocation once: the same signature again is a replay", async () => {
    const { handler, ran } = setup();
    const body = JSON.stringify(request());
    const signature = await signInvocation(KEY, FULFIL_URL, body);
    expect((await post(handler, body, { signature })).status).toBe(206);
    const replayed = await post(handler, body, { signature });
    expect(replayed.status).toBe(401);
    expect(((await replayed.json()) as { error: string }).error).toMatch(/Replayed request/);
    expect(ran).toEqual(["o1"]);
  });

  it("refuses an invocation meant for another app that shares the signing key", async () => {
    const { handler, ran } = setup();
    const body = JSON.stringify(request([], { run: { id: "run-1", appId: "billing", functionId: "fulfil", attempt: 0 } }));
    const res = await post(handler, body);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/for app "billing" but reached app "shop"/);
    expect(ran).toEqual([]);
  });

  it("refuses an invocation whose run is of another function than the one addressed", async () => {
    const { handler, ran } = setup();
    const res = await post(handler, JSON.stringify(request()), { fnId: "plain" });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/for function "fulfil" but was sent to \?fnId=plain/);
    expect(ran).toEqual([]);
  });

  it("reads the signing key from the environment on each request", async () => {
    const { handler, ran } = setup({});
    vi.stubEnv("STEPWISE_SIGNING_KEY", "from-process-env");
    expect((await post(handler, JSON.stringify(request()), { key: "from-process-env" })).status).toBe(206);
    expect((await post(handler, JSON.stringify(request()), { key: "from-worker-env", env: { STEPWISE_SIGNING_KEY: "from-worker-env" } })).status).toBe(206);
    vi.stubEnv("STEPWISE_SIGNING_KEY", "rotated");
    expect((await post(handler, JSON.stringify(request()), { key: "from-process-env" })).status).toBe(401);
    expect(ran).toHaveLength(2);
  });

  it("runs onFailure through its companion with the original event and error", async () => {
    const { handler, failures } = setup();
    const original = { id: "evt-9", name: "order/created", data: { orderId: "o9" }, ts: 1 };
    const failedEvent = {
      id: "run-9:failed",
      name: FUNCTION_FAILED_EVENT,
      data: { functionId: "shop-fulfil", runId: "run-9", error: { name: "CardDeclined", message: "no funds" }, event: original },
      ts: 2,
    };
    const req = request([{ id: "note", name: "note", kind: "run", position: 0, status: "completed", output: "failed o9" }], {
      event: failedEvent,
      events: [failedEvent],
      run: { id: "run-9", appId: "shop", functionId: "fulfil-failure", attempt: 0 },
    });
    const res = await post(handler, JSON.stringify(req), { fnId: "fulfil-failure" });
    expect(await res.json()).toEqual({ type: "completed", output: null });
    expect(failures).toEqual([{ name: "CardDeclined", message: "no funds", orderId: "o9", runId: "run-9", note: "failed o9" }]);
  });
});

describe("PUT", () => {
  it("registers the description with the executor, signed", async () => {
    const calls: Array<{ url: string; body: string; signature: string | null }> = [];
    const fetchStub: typeof fetch = async (input, init) => {
      const headers = new Headers(init?.headers);
      calls.push({ url: String(input), body: String(init?.body), signature: headers.get(HEADERS.signature) });
      return Response.json({ message: "synced 3 functions" });
    };
    const { handler } = setup({ signingKey: KEY, fetch: fetchStub });
    const res = await handler(new Request(URL_BASE, { method: "PUT" }), { STEPWISE_BASE_URL: "http://executor:8288/", STEPWISE_SERVE_URL: URL_BASE });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, message: "synced 3 functions" });
    expect(calls).toHaveLength(1);
    const [call] = calls;
    expect(call?.url).toBe("http://executor:8288/api/apps");
    expect(JSON.parse(call!.body)).toMatchObject({ appId: "shop", url: URL_BASE, functions: [{ id: "fulfil" }, { id: "fulfil-failure" }, { id: "plain" }] });
    expect(await verify(call!.signature, { method: "POST", target: "/api/apps", body: call!.body }, [KEY])).toEqual({ ok: true });
  });

  it("signs with the dev key in dev mode", async () => {
    let signature: string | null = null;
    let body = "";
    const fetchStub: typeof fetch = async (_input, init) => {
      signature = new Headers(init?.headers).get(HEADERS.signature);
      body = String(init?.body);
      return new Response(null, { status: 204 });
    };
    const { handler } = setup({ dev: true, fetch: fetchStub });
    const res = await handler(new Request(URL_BASE, { method: "PUT" }));
    expect(await res.json()).toMatchObject({ ok: true });
    expect(await verify(signature, { method: "POST", target: "/api/apps", body }, [DEV_SIGNING_KEY])).toEqual({ ok: true });
  });

  it("passes the executor's refusal on with its status and message", async () => {
    const fetchStub: typeof fetch = async () => Response.json({ error: "signature does not match" }, { status: 401 });
    const { handler } = setup({ signingKey: KEY, fetch: fetchStub });
    const res = await handler(new Request(URL_BASE, { method: "PUT" }), { STEPWISE_SERVE_URL: URL_BASE });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: string }).error).toContain("signature does not match");
  });

  it("answers 502 when the executor cannot be reached", async () => {
    const fetchStub: typeof fetch = async () => {
      throw new TypeError("fetch failed");
    };
    const { handler } = setup({ signingKey: KEY, fetch: fetchStub });
    const res = await handler(new Request(URL_BASE, { method: "PUT" }), { STEPWISE_SERVE_URL: URL_BASE });
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: string }).error).toMatch(/Could not reach.*fetch failed/);
  });

  /** A stub executor that records the URL each registration names. */
  function recordingExecutor() {
    const registered: string[] = [];
    const fetchStub: typeof fetch = async (_input, init) => {
      registered.push((JSON.parse(String(init?.body)) as AppDescription).url);
      return Response.json({ message: "synced" });
    };
    return { registered, fetchStub };
  }

  it("outside dev mode never takes the URL it registers from the request: a forged Host registers nothing", async () => {
    const { registered, fetchStub } = recordingExecutor();
    const { handler } = setup({ signingKey: KEY, fetch: fetchStub });
    // What `Host: attacker.example` (or X-Forwarded-Host) turns the request URL into.
    const res = await handler(new Request("https://attacker.example/api/durable", { method: "PUT", headers: { host: "attacker.example" } }));
    expect(res.status).toBe(500);
    expect(((await res.json()) as { error: string }).error).toMatch(/Set STEPWISE_SERVE_URL.*Host header anyone can forge/);
    expect(registered).toEqual([]);
  });

  it("registers the configured URL whatever the request's Host says", async () => {
    const { registered, fetchStub } = recordingExecutor();
    const { handler } = setup({ signingKey: KEY, fetch: fetchStub });
    const res = await handler(new Request("https://attacker.example/api/durable", { method: "PUT" }), { STEPWISE_SERVE_URL: URL_BASE });
    expect(res.status).toBe(200);
    expect(registered).toEqual([URL_BASE]);
  });

  it("in dev mode registers the URL it is called on", async () => {
    const { registered, fetchStub } = recordingExecutor();
    const { handler } = setup({ dev: true, fetch: fetchStub });
    await handler(new Request("http://127.0.0.1:3000/api/durable?x=1", { method: "PUT" }));
    expect(registered).toEqual(["http://127.0.0.1:3000/api/durable"]);
  });

  it("outside dev mode reaches the executor at most once in 10 s, however many PUTs arrive", async () => {
    const { registered, fetchStub } = recordingExecutor();
    const { handler } = setup({ signingKey: KEY, fetch: fetchStub });
    const env = { STEPWISE_SERVE_URL: URL_BASE };
    expect((await handler(new Request(URL_BASE, { method: "PUT" }), env)).status).toBe(200);
    const again = await handler(new Request(URL_BASE, { method: "PUT" }), env);
    expect(again.status).toBe(429);
    expect(Number(again.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(((await again.json()) as { error: string }).error).toMatch(/try again in \d+s/);
    expect(registered).toEqual([URL_BASE]);
  });
});

describe("serve() setup", () => {
  it("refuses duplicate function IDs and functions of another app", () => {
    const a = new Stepwise({ id: "a" });
    const b = new Stepwise({ id: "b" });
    const one = a.createFunction({ id: "one", triggers: [] }, async () => 1);
    const again = a.createFunction({ id: "one", triggers: [] }, async () => 2);
    const foreign = b.createFunction({ id: "two", triggers: [] }, async () => 2);
    expect(() => serve({ client: a, functions: [one, again] })).toThrow(/two functions have the ID "one"/);
    expect(() => serve({ client: a, functions: [foreign] })).toThrow(/belongs to app "b"/);
  });

  it("checks function options when the function is created", () => {
    const a = new Stepwise({ id: "a" });
    expect(() => a.createFunction({ id: "x", triggers: [], retries: 50 }, async () => 1)).toThrow(/retries/);
  });
});
