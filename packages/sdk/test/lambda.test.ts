/** The Lambda adapter on AWS's documented events: URL, headers, query and result shapes. */
import { HEADERS } from "@stepwise/protocol";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { serve, toRequest } from "../src/adapters/lambda.ts";
import { Stepwise } from "../src/index.ts";
import { functionUrlEvent, httpApiV2Event, restApiV1Event } from "./fixtures/lambda-events.ts";
import { request, signedGet, signInvocation } from "./helpers.ts";

const KEY = "lambda-key";

function handler() {
  const client = new Stepwise({ id: "shop", signingKey: KEY });
  const fn = client.createFunction({ id: "fulfil", triggers: [] }, async () => "done");
  return serve({ client, functions: [fn] });
}

beforeEach(() => vi.stubEnv("STEPWISE_SERVE_URL", ""));
afterEach(() => vi.unstubAllEnvs());

describe("toRequest", () => {
  it("REST API (v1): the public URL keeps the stage, headers keep every value", async () => {
    const event = {
      ...restApiV1Event,
      multiValueHeaders: { ...restApiV1Event.multiValueHeaders, "X-Tag": ["a", "b"] },
      multiValueQueryStringParameters: { fnId: ["fulfil"], tag: ["a b", "c&d"] },
      queryStringParameters: { fnId: "fulfil", tag: "c&d" },
    };
    const req = toRequest(event);
    expect(req.method).toBe("GET");
    expect(req.url).toBe("https://70ixmpl4fl.execute-api.us-east-2.amazonaws.com/Prod/?fnId=fulfil&tag=a+b&tag=c%26d");
    expect(req.headers.get("x-tag")).toBe("a, b");
    expect(req.headers.get("user-agent")).toBe("Mozilla/5.0");
  });

  it("HTTP API (v2): raw path and query as sent, cookies back in one header", async () => {
    const req = toRequest(httpApiV2Event);
    expect(req.method).toBe("POST");
    expect(req.url).toBe("https://id.execute-api.us-east-1.amazonaws.com/my/path?parameter1=value1&parameter1=value2&parameter2=value");
    expect(req.headers.get("cookie")).toBe("cookie1; cookie2");
    expect(req.headers.get("header2")).toBe("value1,value2");
    expect(await req.text()).toBe("Hello from Lambda");
  });

  it("Function URL: falls back to requestContext.domainName and https without host headers", () => {
    const req = toRequest({ ...functionUrlEvent, headers: { header1: "value1" } });
    expect(req.url).toBe("https://abcdefg.lambda-url.us-west-2.on.aws/my/path?parameter1=value1&parameter1=value2&parameter2=value");
  });

  it("decodes a base64 body to its exact bytes", async () => {
    const bytes = new TextEncoder().encode('{"note":"Grüße 🚚"}');
    const body = btoa(Array.from(bytes, (byte) => String.fromCharCode(byte)).join(""));
    const req = toRequest({ ...functionUrlEvent, body, isBase64Encoded: true });
    expect(new Uint8Array(await req.arrayBuffer())).toEqual(bytes);
  });
});

describe("serve", () => {
  it("answers a signed HTTP API invocation with a v2 result", async () => {
    const body = JSON.stringify(request());
    const event = {
      ...httpApiV2Event,
      rawPath: "/api/durable",
      rawQueryString: "fnId=fulfil",
      headers: { ...httpApiV2Event.headers, "content-type": "application/json", [HEADERS.signature]: await signInvocation(KEY, "https://lambda.example/api/durable?fnId=fulfil", body) },
      body,
    };
    const result = await handler()(event);
    expect(result).toEqual({
      statusCode: 200,
      headers: { "content-type": "application/json", [HEADERS.sdk]: "stepwise-js/0.1.0" },
      body: JSON.stringify({ type: "completed", output: "done" }),
      isBase64Encoded: false,
    });
  });

  it("adds multiValueHeaders to a REST API (v1) result", async () => {
    const url = "https://70ixmpl4fl.execute-api.us-east-2.amazonaws.com/Prod/api/durable";
    const headers = { ...restApiV1Event.headers, ...(await signedGet(KEY, url)) };
    const result = await handler()({ ...restApiV1Event, headers, path: "/api/durable", requestContext: { ...restApiV1Event.requestContext, path: "/Prod/api/durable" } });
    expect(result.statusCode).toBe(200);
    expect(result.multiValueHeaders).toEqual({ "content-type": ["application/json"], [HEADERS.sdk]: ["stepwise-js/0.1.0"] });
    expect(JSON.parse(result.body)).toMatchObject({ url: "https://70ixmpl4fl.execute-api.us-east-2.amazonaws.com/Prod/api/durable" });
  });

  it("rejects an unsigned invocation without running anything", async () => {
    const result = await handler()({ ...functionUrlEvent, rawQueryString: "fnId=fulfil", body: JSON.stringify(request()) });
    expect(result.statusCode).toBe(401);
  });

  it("starts checkpointed steps only in the first half of the time Lambda leaves the invocation", async () => {
    const checkpoints: string[] = [];
    const client = new Stepwise({
      id: "shop",
      signingKey: KEY,
      baseUrl: "http://executor.test:8288",
      fetch: async (_input, init) => {
        checkpoints.push((JSON.parse(String(init?.body)) as { step: { id: string } }).step.id);
        return Response.json({ ok: true });
      },
    });
    const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const fn = client.createFunction({ id: "fulfil", triggers: [] }, async ({ step }) => {
      await step.run("a", () => pause(60).then(() => "a"));
      return step.run("b", () => pause(60).then(() => "b"));
    });
    const lambda = serve({ client, functions: [fn] });
    let attempt = 0;
    const invoke = async (context?: { getRemainingTimeInMillis(): number }) => {
      // Each invocation signed anew (the app refuses a replayed one), as the executor signs them.
      const body = JSON.stringify(request([], { checkpoint: { token: `7.${++attempt}.executor-a` } }));
      const url = "https://lambda.example/api/durable?fnId=fulfil";
      const headers = { ...httpApiV2Event.headers, "content-type": "application/json", [HEADERS.signature]: await signInvocation(KEY, url, body) };
      return lambda({ ...httpApiV2Event, rawPath: "/api/durable", rawQueryString: "fnId=fulfil", headers, body }, context);
    };
    // 100 ms left: steps start only in the first 50, so step "a" (60 ms) ends past the budget
    // and goes in the answer, not through a checkpoint.
    const short = await invoke({ getRemainingTimeInMillis: () => 100 });
    expect(short.statusCode).toBe(206);
    expect(JSON.parse(short.body)).toMatchObject({ type: "ops", ops: [{ op: "step-ran", id: "a", output: "a" }] });
    expect(checkpoints).toEqual([]);
    // A minute left, or no context at all: the function's own budget (5 s) holds.
    for (const context of [{ getRemainingTimeInMillis: () => 60_000 }, undefined]) {
      checkpoints.length = 0;
      const long = await invoke(context);
      expect(long.statusCode).toBe(200);
      expect(JSON.parse(long.body)).toEqual({ type: "completed", output: "b" });
      expect(checkpoints).toEqual(["a", "b"]);
    }
  });
});
