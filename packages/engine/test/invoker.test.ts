/**
 * The executor's call to an app, over a real socket, on both transports it uses (kept-alive
 * node:http on Node, fetch on Workers or when given one): every way the app can misbehave
 * becomes an `error` answer naming what happened and whether a retry makes sense, within the
 * invocation timeout; a good answer comes back as the app sent it, signed for its route.
 */
import { createServer, type Server } from "node:http";
import { PROTOCOL_VERSION, requestTarget, verify, type InvokeRequest, type InvokeRequestWire, type InvokeResponse } from "@stepwise/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeploymentGone, InvocationNotStarted } from "../src/errors.ts";
import { invokeApp, type InvokerOptions } from "../src/invoker.ts";
import { freePort } from "../../../test/support/net.ts";

const KEY = "invoker-test-key";
const request: InvokeRequest = {
  version: PROTOCOL_VERSION,
  run: { id: "run-1", appId: "shop", functionId: "fulfil", attempt: 0 },
  event: { id: "evt-1", name: "order/created", data: { orderId: "o1" }, ts: 1_700_000_000_000 },
  events: [],
  steps: [],
};
const completed: InvokeResponse = { type: "completed", output: { ok: "é ✓" } };

let server: Server;
let base = "";
const verified: boolean[] = [];

/** The app: what it answers depends on the function invoked (`?fnId=`). */
beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk) => (body += chunk));
    req.on("end", async () => {
      const url = new URL(req.url!, "http://app");
      const signature = req.headers["x-stepwise-signature"] as string;
      verified.push((await verify(signature, { method: "POST", target: requestTarget(url), body }, [KEY])).ok);
      const json = (status: number, value: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(value));
      };
      let fnId = url.searchParams.get("fnId");
      // `older-sdk:<then>`: an SDK from before the compact form, which requires every field of a
      // stored step; the full form is answered as `<then>` is (the request names it).
      if (fnId?.startsWith("older-sdk:")) {
        const { run, steps } = JSON.parse(body) as { run: { functionId: string }; steps: Array<{ name?: string }> };
        if (!steps.every((step) => typeof step.name === "string")) return json(400, { error: "steps.0.name: expected string" });
        fnId = run.functionId;
      }
      switch (fnId) {
        case "ok":
          return json(200, completed);
        case "bad-gateway":
          res.writeHead(502, { "content-type": "text/html" });
          return res.end("<html><body><h1>502 Bad Gateway</h1></body></html>");
        case "unauthorized":
          return json(401, { error: "signature expired" });
        case "bad-request":
          return json(400, { error: "unreadable invocation" });
        case "slow":
          return void setTimeout(() => json(200, completed), 2_000);
        case "stalls":
          res.writeHead(200, { "content-type": "application/json" });
          res.write('{"type":"comp');
          return void setTimeout(() => res.end('leted","output":1}'), 2_000);
        case "truncated":
          res.writeHead(200, { "content-type": "application/json", "content-length": "200" });
          res.write('{"type":"completed","out');
          return void setTimeout(() => res.destroy(), 20);
        case "garbage":
          return json(200, { type: "ops", ops: [{ op: "teleport" }] });
        case "huge":
          return json(200, { type: "completed", output: "x".repeat(100_000) });
        case "redirect":
          res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data" });
          return res.end();
        case "not-found":
          res.writeHead(404, { "content-type": "text/plain" });
          return res.end("The deployment could not be found");
        case "server-error":
          return json(500, { error: "boom" });
        case "not-started":
          return json(503, { error: "could not read the step outputs back", notStarted: true });
        case "unavailable":
          res.writeHead(503, { "content-type": "text/html" });
          return res.end("<html><body>503 Service Unavailable</body></html>");
      }

    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}/api/durable`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const transports: Array<[string, Partial<InvokerOptions>]> = [
  ["node:http", {}],
  ["fetch", { fetch: (...args: Parameters<typeof fetch>) => fetch(...args) }],
];

describe.each(transports)("invoking an app over %s", (_name, transport) => {
  const options: InvokerOptions = { signingKey: KEY, timeoutMs: 500, maxResponseBytes: 50_000, ...transport };
  const call = (fnId: string, url = base) => invokeApp(options, { id: "shop", url }, fnId, request);
  const failure = async (fnId: string, url?: string) => {
    const answer = await call(fnId, url);
    if (answer.type !== "error") throw new Error(`expected an error answer, got ${JSON.stringify(answer)}`);
    return { name: answer.error.name, message: answer.error.message, retriable: answer.retriable };
  };

  it("returns the app's answer, signed for the app's route and function", async () => {
    verified.length = 0;
    expect(await call("ok")).toEqual(completed);
    expect(await call("ok")).toEqual(completed);
    expect(verified).toEqual([true, true]);
  });

  it("a 502 HTML page is a retriable app error that quotes the page, not a parse failure", async () => {
    expect(await failure("bad-gateway")).toEqual({ name: "AppError", message: expect.stringContaining("HTTP 502: <html>"), retriable: true });
  });

  it("a 401 is retriable (a key being rotated); a 400 is not (the same request would fail again)", async () => {
    expect(await failure("unauthorized")).toEqual({ name: "AppError", message: "The app answered HTTP 401: signature expired", retriable: true });
    expect(await failure("bad-request")).toMatchObject({ name: "AppError", retriable: false });
  });

  it("a refused connection says the app could not be reached, and is retriable", async () => {
    const closed = `http://127.0.0.1:${await freePort()}/api/durable`;
    expect(await failure("ok", closed)).toEqual({ name: "AppUnreachable", message: expect.stringMatching(/^Could not reach http:\/\/127\.0\.0\.1:\d+\/api\/durable: .*ECONNREFUSED/), retriable: true });
  });

  it("no answer within the timeout, or an answer that stalls past it, ends the call at the timeout", async () => {
    const started = Date.now();
    expect(await failure("slow")).toMatchObject({ name: "AppUnreachable", message: expect.stringContaining("Could not reach"), retriable: true });
    expect(await failure("stalls")).toMatchObject({ name: "AppUnreachable", message: expect.stringContaining("was cut off"), retriable: true });
    // Two calls of 500 ms each, far from the app's 2 s.
    expect(Date.now() - started).toBeLessThan(1_900);
  });

  it("truncated JSON is a retriable failure, never a parse error or a crash", async () => {
    expect(await failure("truncated")).toMatchObject({ name: "AppUnreachable", message: expect.stringContaining("cut off"), retriable: true });
  });

  it("JSON that breaks the protocol, and an answer past the size limit, are not retried", async () => {
    expect(await failure("garbage")).toMatchObject({ name: "AppAnswerInvalid", message: expect.stringContaining("breaks the protocol"), retriable: false });
    expect(await failure("huge")).toMatchObject({ name: "AppResponseTooLarge", retriable: false });
  });

  it("a redirect is not followed: the signed request never goes where nobody checked", async () => {
    expect(await failure("redirect")).toEqual({
      name: "AppRedirected",
      message: expect.stringContaining("HTTP 302 to http://169.254.169.254/latest/meta-data"),
      retriable: true,
    });
  });
  describe("with steps in the compact form", () => {
    const compact: InvokeRequestWire = { ...request, steps: [{ id: "a", output: 1 }] };
    const inFull = (fnId: string): InvokeRequestWire => ({ ...request, run: { ...request.run, functionId: fnId }, steps: [{ id: "a", name: "a", kind: "run", position: 0, status: "completed", output: 1 }] });
    /** Calls `fnId`, whose older SDK refuses the compact form, and whose answer to the full form is `then`'s. */
    const withFallback = (then: string) => {
      const told: string[] = [];
      const answer = invokeApp(options, { id: "shop", url: base }, `older-sdk:${then}`, compact, {}, {
        request: () => inFull(then),
        refused: () => told.push("refused"),
        fullForm: (read, reason) => told.push(`${read ? "read" : "refused too"}: ${reason}`),
      });
      return { answer, told };
    };

    it("an instance that refuses them 400 is asked again in full, and both answers are told", async () => {
      const { answer, told } = withFallback("ok");
      expect(await answer).toEqual(completed);
      expect(told).toEqual(["refused", "read: steps.0.name: expected string"]);
    });

    it("a 400 to the full form too is the app's answer: told as such, and the run's to fail", async () => {
      const { answer, told } = withFallback("bad-request");
      expect(await answer).toMatchObject({ type: "error", error: { name: "AppError", message: "The app answered HTTP 400: unreadable invocation" }, retriable: false });
      expect(told).toEqual(["refused", "refused too: steps.0.name: expected string"]);
    });

    it("the SDK's word that nothing started is a reading; a proxy's 503 page says nothing of the SDK", async () => {
      const notStarted = withFallback("not-started");
      await expect(notStarted.answer).rejects.toThrow(InvocationNotStarted);
      expect(notStarted.told).toEqual(["refused", "read: steps.0.name: expected string"]);
      const proxy = withFallback("unavailable");
      expect(await proxy.answer).toMatchObject({ type: "error", error: { name: "AppError" }, retriable: true });
      expect(proxy.told).toEqual(["refused"]);
    });
  });

  describe("at a pinned deployment (a run's earlier version)", () => {
    const pinned = (fnId: string, url = base) => invokeApp(options, { id: "shop", url, pinned: true }, fnId, request);

    it("a 404 or a refused connection says the deployment is gone: nothing ran there", async () => {
      await expect(pinned("not-found")).rejects.toThrow(DeploymentGone);
      await expect(pinned("not-found")).rejects.toThrow(/answered HTTP 404/);
      const closed = `http://127.0.0.1:${await freePort()}/api/durable`;
      await expect(pinned("ok", closed)).rejects.toThrow(/could not be reached \(ECONNREFUSED\)/);
    });

    it("a timeout or a 5xx is the app's own failure, retried where it is", async () => {
      expect(await pinned("server-error")).toMatchObject({ type: "error", retriable: true });
      expect(await pinned("slow")).toMatchObject({ type: "error", error: { name: "AppUnreachable" }, retriable: true });
    });

    it("unpinned, a 404 stays an app error", async () => {
      expect(await failure("not-found")).toMatchObject({ name: "AppError", retriable: true });
    });
  });
});
