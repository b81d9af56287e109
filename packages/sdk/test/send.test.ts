/** Sending events: validated before anything leaves, sent with the event key, errors explained. */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { Stepwise, StepwiseApiError, StepwiseValidationError } from "../src/index.ts";

interface Sent {
  url: string;
  authorization: string | null;
  body: unknown;
}

function client(answer: () => Response = () => Response.json({ ids: ["e1", "e2"] }), options: { eventKey?: string; dev?: boolean } = { eventKey: "key-1" }) {
  const sent: Sent[] = [];
  const fetchStub: typeof fetch = async (input, init) => {
    sent.push({ url: String(input), authorization: new Headers(init?.headers).get("authorization"), body: JSON.parse(String(init?.body)) });
    return answer();
  };
  const stepwise = new Stepwise({
    id: "shop",
    schemas: {
      "order/created": z.object({ orderId: z.string(), items: z.array(z.object({ sku: z.string(), qty: z.number().int() })) }),
      "order/noted": z.object({ orderId: z.string(), note: z.string().default("none") }),
    },
    fetch: fetchStub,
    ...options,
  });
  return { stepwise, sent };
}

beforeEach(() => {
  for (const name of ["STEPWISE_EVENT_KEY", "STEPWISE_BASE_URL", "STEPWISE_DEV"]) vi.stubEnv(name, "");
});
afterEach(() => vi.unstubAllEnvs());

describe("the executor's event rules, checked in the app first", () => {
  it.each([
    ["a reserved name", { name: "stepwise/function.failed", data: {} }, /name: names starting with "stepwise\/" are reserved/],
    ["data that is not an object", { name: "a/b", data: [1, 2] }, /data: data must be a JSON object/],
    ["a fractional ts", { name: "a/b", data: {}, ts: 1.5 }, /ts: ts must be a whole number/],
    ["a NUL in the id", { name: "a/b", data: {}, id: "x\u0000" }, /id: id contains a NUL character/],
    ["an id in the executor's derived namespace", { name: "a/b", data: {}, id: "stepwise:run:step:0" }, /id: ids starting with "stepwise:" are reserved/],
  ])("send() refuses %s with a typed error, and sends nothing", async (_, event, message) => {
    const { stepwise, sent } = client();
    const refused = stepwise.send(event as never);
    await expect(refused).rejects.toBeInstanceOf(StepwiseValidationError);
    await expect(refused).rejects.toThrow(message);
    expect(sent).toEqual([]);
  });
});

describe("send()", () => {
  it("posts the events with the event key and resolves their IDs", async () => {
    const { stepwise, sent } = client();
    const result = await stepwise.send([
      { name: "order/created", data: { orderId: "o1", items: [{ sku: "a", qty: 1 }] } },
      { name: "order/noted", data: { orderId: "o1" }, id: "dedupe-1" },
    ]);
    expect(result).toEqual({ ids: ["e1", "e2"] });
    expect(sent).toEqual([
      {
        url: "http://127.0.0.1:8288/api/events",
        authorization: "Bearer key-1",
        body: [
          { name: "order/created", data: { orderId: "o1", items: [{ sku: "a", qty: 1 }] } },
          { name: "order/noted", data: { orderId: "o1", note: "none" }, id: "dedupe-1" },
        ],
      },
    ]);
  });

  it("throws StepwiseValidationError naming the event and field, and sends nothing", async () => {
    const { stepwise, sent } = client();
    const attempt = stepwise.send([
      { name: "order/noted", data: { orderId: "fine" } },
      { name: "order/created", data: { orderId: "o1", items: [{ sku: "a", qty: 1.5 }] } },
    ]);
    await expect(attempt).rejects.toBeInstanceOf(StepwiseValidationError);
    await expect(attempt).rejects.toMatchObject({
      eventName: "order/created",
      issues: [{ path: "data.items.0.qty" }],
      message: expect.stringMatching(/^Invalid event "order\/created": data\.items\.0\.qty: /),
    });
    expect(sent).toEqual([]);
  });

  it("sends events without a schema as they are", async () => {
    const { stepwise, sent } = client(() => Response.json({ ids: ["e1"] }));
    await stepwise.send({ name: "free/form", data: { anything: [1, 2] }, ts: 5 });
    expect(sent[0]?.body).toEqual([{ name: "free/form", data: { anything: [1, 2] }, ts: 5 }]);
  });

  it("throws StepwiseApiError with the executor's status and message", async () => {
    const { stepwise } = client(() => Response.json({ error: "event key revoked" }, { status: 401 }));
    const attempt = stepwise.send({ name: "order/noted", data: { orderId: "o1" } });
    await expect(attempt).rejects.toBeInstanceOf(StepwiseApiError);
    await expect(attempt).rejects.toMatchObject({ status: 401, message: expect.stringContaining("event key revoked") });
  });

  it("throws when the answer has no ids", async () => {
    const { stepwise } = client(() => Response.json({ ok: true }));
    await expect(stepwise.send({ name: "x" })).rejects.toMatchObject({ name: "StepwiseApiError", message: expect.stringContaining("without event ids") });
  });

  it("reads the environment on each call, not in the constructor", async () => {
    const { stepwise, sent } = client(undefined, {});
    await expect(stepwise.send({ name: "x" })).rejects.toThrow(/STEPWISE_EVENT_KEY/);
    vi.stubEnv("STEPWISE_EVENT_KEY", "env-key");
    vi.stubEnv("STEPWISE_BASE_URL", "https://executor.example/");
    await stepwise.send({ name: "x" });
    vi.stubEnv("STEPWISE_EVENT_KEY", "");
    vi.stubEnv("STEPWISE_DEV", "1");
    await stepwise.send({ name: "x" });
    expect(sent.map(({ url, authorization }) => [url, authorization])).toEqual([
      ["https://executor.example/api/events", "Bearer env-key"],
      ["https://executor.example/api/events", "Bearer dev"],
    ]);
  });
});
