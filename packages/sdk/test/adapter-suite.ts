/**
 * One suite for every `serve()` adapter (like inngest-js's `testFramework()`): each adapter
 * receives the same Web requests, translated to its own input shape by a small `mount`.
 */
import { HEADERS, verify } from "@stepwise/protocol";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import type { ServeOptions } from "../src/serve.ts";
import { Stepwise } from "../src/index.ts";
import { request, signedGet, signInvocation, TRIGGER } from "./helpers.ts";

export const KEY = "adapter-suite-key";
const EXECUTOR = "http://executor.test:8288";

/** An adapter mounted on an app: sends a Web request through the adapter's own shape. */
export interface Mounted {
  /** The URL the adapter serves on, as a client calls it (the suite adds `?fnId=`). */
  url: string;
  call(request: Request): Promise<Response>;
  close?(): Promise<void>;
}

/** How to mount one adapter; `url` is where the suite will call it. */
export interface AdapterUnderTest {
  name: string;
  mount(options: ServeOptions): Promise<Mounted>;
}

function app(fetchStub?: typeof fetch) {
  const client = new Stepwise({
    id: "shop",
    signingKey: KEY,
    baseUrl: EXECUTOR,
    schemas: { "order/created": z.object({ orderId: z.string(), note: z.string().optional() }) },
    ...(fetchStub ? { fetch: fetchStub } : {}),
  });
  const ran: unknown[] = [];
  const fn = client.createFunction({ id: "fulfil", triggers: [{ event: "order/created" }] }, async ({ event, step }) => {
    ran.push(event.data);
    return step.run("reserve", () => `reserved ${event.data.orderId}`);
  });
  return { client, fn, ran };
}

// Multi-byte UTF-8 in the body: a text/bytes mix-up anywhere changes the signed bytes.
const unicodeEvent = { ...TRIGGER, data: { orderId: "o1", note: "Grüße, 注文 🚚" } };
const invocation = JSON.stringify(request([], { event: unicodeEvent, events: [unicodeEvent] }));

/** Runs the shared cases against `adapter`. */
export function testAdapter(adapter: AdapterUnderTest): void {
  describe(`serve() through ${adapter.name}`, () => {
    let mounted: Mounted | undefined;
    beforeEach(() => {
      for (const name of ["STEPWISE_SIGNING_KEY", "STEPWISE_SIGNING_KEY_NEXT", "STEPWISE_DEV", "STEPWISE_SERVE_URL", "STEPWISE_BASE_URL"]) vi.stubEnv(name, "");
    });
    afterEach(async () => {
      vi.unstubAllEnvs();
      await mounted?.close?.();
      mounted = undefined;
    });

    async function mount(fetchStub?: typeof fetch) {
      const { client, fn, ran } = app(fetchStub);
      mounted = await adapter.mount({ client, functions: [fn] });
      return { ran, url: mounted.url, call: mounted.call };
    }

    /** POSTs `body` to `?fnId=fulfil`, with the signature `signature` makes for that URL. */
    async function post(body: string, signature: (url: string) => Promise<string | null>) {
      const { ran, url, call } = await mount();
      const target = `${url}?fnId=fulfil`;
      const headers: Record<string, string> = { "content-type": "application/json" };
      const header = await signature(target);
      if (header !== null) headers[HEADERS.signature] = header;
      const res = await call(new Request(target, { method: "POST", headers, body }));
      return { res, ran };
    }

    it("a signed GET describes the app at the URL it is called on", async () => {
      const { url, call } = await mount();
      const res = await call(new Request(`${url}?probe=1`, { headers: await signedGet(KEY, `${url}?probe=1`) }));
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/json");
      expect(await res.json()).toMatchObject({ appId: "shop", url, functions: [{ id: "fulfil" }] });
    });

    it("POST with a valid signature runs one step and answers 206", async () => {
      const { res, ran } = await post(invocation, (url) => signInvocation(KEY, url, invocation));
      expect(res.status).toBe(206);
      expect(res.headers.get(HEADERS.sdk)).toBe("stepwise-js/0.1.0");
      expect(await res.json()).toEqual({ type: "ops", ops: [{ op: "step-ran", id: "reserve", name: "reserve", position: 0, output: "reserved o1" }] });
      expect(ran).toEqual([unicodeEvent.data]);
    });

    const badSignatures: [string, (url: string) => Promise<string | null>, RegExp][] = [
      ["missing", async () => null, /Missing x-stepwise-signature/],
      ["tampered", (url) => signInvocation(KEY, url, invocation.replace("o1", "o2")), /does not match/],
      ["stale", (url) => signInvocation(KEY, url, invocation, Date.now() - 10 * 60_000), /Stale signature/],
      ["wrong-key", (url) => signInvocation("another-key", url, invocation), /does not match/],
      ["another function's", (url) => signInvocation(KEY, url.replace("fnId=fulfil", "fnId=refund"), invocation), /does not match/],
    ];
    it.each(badSignatures)("POST with a %s signature answers 401 and runs nothing", async (_case, signature, message) => {
      const { res, ran } = await post(invocation, signature);
      expect(res.status).toBe(401);
      expect(((await res.json()) as { error: string }).error).toMatch(message);
      expect(ran).toEqual([]);
    });

    it("POST with a signed body that is not an invocation answers 400", async () => {
      for (const body of ["{not json", JSON.stringify({ hello: "world" })]) {
        const { res, ran } = await post(body, (url) => signInvocation(KEY, url, body));
        expect(res.status).toBe(400);
        expect(((await res.json()) as { error: string }).error).toMatch(/Body is not/);
        expect(ran).toEqual([]);
      }
    });

    it("PUT registers the app with the executor, signed", async () => {
      const calls: { url: string; body: string; signature: string | null }[] = [];
      const fetchStub: typeof fetch = async (input, init) => {
        const body = String(init?.body);
        calls.push({ url: String(input), body, signature: new Headers(init?.headers).get(HEADERS.signature) });
        return Response.json({ ok: true, message: "synced 1 function" });
      };
      const { url, call } = await mount(fetchStub);
      // Outside dev mode the app registers its configured URL, never one read off the request.
      vi.stubEnv("STEPWISE_SERVE_URL", url);
      const res = await call(new Request(url, { method: "PUT" }));
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ ok: true, message: "synced 1 function" });
      expect(calls).toHaveLength(1);
      expect(calls[0]!.url).toBe(`${EXECUTOR}/api/apps`);
      expect(JSON.parse(calls[0]!.body)).toMatchObject({ appId: "shop", url, functions: [{ id: "fulfil" }] });
      expect(await verify(calls[0]!.signature, { method: "POST", target: "/api/apps", body: calls[0]!.body }, [KEY])).toEqual({ ok: true });
    });

    it("a checkpointed invocation commits its step through the executor and goes on to the end within the one request", async () => {
      const checkpoints: Array<{ body: string; signature: string | null }> = [];
      const executor: typeof fetch = async (input, init) => {
        expect(String(input)).toBe(`${EXECUTOR}/api/checkpoints`);
        checkpoints.push({ body: String(init?.body), signature: new Headers(init?.headers).get(HEADERS.signature) });
        return Response.json({ ok: true });
      };
      const { url, call } = await mount(executor);
      const body = JSON.stringify(request([], { event: unicodeEvent, events: [unicodeEvent], checkpoint: { token: "7.1.executor-a" } }));
      const target = `${url}?fnId=fulfil`;
      const res = await call(new Request(target, { method: "POST", headers: { "content-type": "application/json", [HEADERS.signature]: await signInvocation(KEY, target, body) }, body }));
      // The step's result was durable before the function went on; the answer is the function's end.
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ type: "completed", output: "reserved o1" });
      expect(checkpoints).toHaveLength(1);
      expect(JSON.parse(checkpoints[0]!.body)).toMatchObject({ token: "7.1.executor-a", run: { id: "run-1", appId: "shop", functionId: "fulfil" }, step: { id: "reserve", position: 0, output: "reserved o1" } });
      expect(await verify(checkpoints[0]!.signature, { method: "POST", target: "/api/checkpoints", body: checkpoints[0]!.body }, [KEY])).toEqual({ ok: true });
    });

    it("a refused checkpoint stops the invocation: the step's result goes in the answer, nothing after it runs", async () => {
      let asked = 0;
      // The executor says this invocation must stop (its lease went to another worker, say).
      const executor: typeof fetch = async () => (asked++, Response.json({ refused: "lease-lost" }, { status: 409 }));
      const { url, call } = await mount(executor);
      const body = JSON.stringify(request([], { event: unicodeEvent, events: [unicodeEvent], checkpoint: { token: "7.2.executor-a" } }));
      const target = `${url}?fnId=fulfil`;
      const res = await call(new Request(target, { method: "POST", headers: { "content-type": "application/json", [HEADERS.signature]: await signInvocation(KEY, target, body) }, body }));
      expect(asked).toBe(1);
      expect(res.status).toBe(206);
      expect(await res.json()).toEqual({ type: "ops", ops: [{ op: "step-ran", id: "reserve", name: "reserve", position: 0, output: "reserved o1" }] });
    });
  });
}
