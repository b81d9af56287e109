import { describe, expect, it } from "vitest";
import { expressionError, jsonEqual, matches, valueAtPath } from "../src/expressions.ts";

const trigger = { name: "order/created", data: { orderId: "o1", amount: 100 } };

describe("event matching", () => {
  it("reads dotted paths", () => {
    expect(valueAtPath(trigger, "data.orderId")).toBe("o1");
    expect(valueAtPath(trigger, "data.missing.deeper")).toBeUndefined();
  });

  it("matches on an equal field, not on a different or missing one", () => {
    const matcher = { matchPath: "data.orderId", matchValue: "o1" };
    expect(matches(matcher, trigger, { data: { orderId: "o1" } })).toBe(true);
    expect(matches(matcher, trigger, { data: { orderId: "o2" } })).toBe(false);
    expect(matches(matcher, trigger, { data: {} })).toBe(false);
  });

  it("evaluates CEL over the trigger (event) and the candidate (async)", () => {
    const matcher = { ifExpr: "async.data.amount >= event.data.amount && async.data.currency == 'EUR'" };
    expect(matches(matcher, trigger, { data: { amount: 150, currency: "EUR" } })).toBe(true);
    expect(matches(matcher, trigger, { data: { amount: 50, currency: "EUR" } })).toBe(false);
    // A missing field is no match, not an error.
    expect(matches(matcher, trigger, { data: { amount: 150 } })).toBe(false);
  });

  it("reports syntax errors with their position", () => {
    expect(expressionError("event.data.(")).toMatch(/Expected/);
    expect(expressionError("event.data.x == 1")).toBeNull();
  });

  it("compares JSON structurally", () => {
    expect(jsonEqual({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] })).toBe(true);
    expect(jsonEqual({ a: 1, b: 2 }, { b: 2, a: 1 })).toBe(true);
    expect(jsonEqual([1], { 0: 1 })).toBe(false);
    expect(jsonEqual({ a: 1 }, { a: 1, b: undefined })).toBe(false);
  });
});
