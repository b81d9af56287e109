import { describe, expect, it } from "vitest";
import { InputError } from "../src/errors.ts";
import { parseEvents } from "../src/event-input.ts";
import { DEFAULT_LIMITS } from "../src/limits.ts";

describe("parseEvents", () => {
  it("fills in id, data and ts", () => {
    const [event] = parseEvents({ name: "a/b" }, DEFAULT_LIMITS, 1_000);
    expect(event).toMatchObject({ name: "a/b", data: {}, ts: 1_000 });
    expect(event?.id).toMatch(/^[0-9A-Z]{26}$/);
  });

  it("keeps a given id and ts", () => {
    expect(parseEvents([{ name: "a/b", id: "x", ts: 5, data: { k: 1 } }], DEFAULT_LIMITS)).toEqual([
      { id: "x", name: "a/b", data: { k: 1 }, ts: 5 },
    ]);
  });

  it("names the field that is wrong, and where in a batch", () => {
    expect(() => parseEvents([{ name: "a" }, { name: 3 }], DEFAULT_LIMITS)).toThrow(/at 1\.name: name must be a string/);
    expect(() => parseEvents({ name: "a", ts: -1 }, DEFAULT_LIMITS)).toThrow(/at ts/);
  });

  it("answers 413 for a payload over the limit", () => {
    const limits = { ...DEFAULT_LIMITS, maxEventBytes: 100 };
    try {
      parseEvents({ name: "a", data: { blob: "x".repeat(200) } }, limits);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(InputError);
      expect((error as InputError).status).toBe(413);
      expect((error as Error).message).toMatch(/limit is 100 B/);
    }
  });

  it("rejects two events with one id in a request, naming both, instead of storing one under the other's name", () => {
    expect(() => parseEvents([{ name: "a", id: "y" }, { name: "b", id: "y" }], DEFAULT_LIMITS)).toThrow(/event 1 \(b\): its id "y" is also the id of event 0/);
  });

  it("rejects names and ids a store cannot hold, and a ts that is not a whole number", () => {
    expect(() => parseEvents({ name: "a\u0000" }, DEFAULT_LIMITS)).toThrow(/name contains a NUL/);
    expect(() => parseEvents({ name: "a", id: "\ud800" }, DEFAULT_LIMITS)).toThrow(/id contains a lone UTF-16 surrogate/);
    expect(() => parseEvents({ name: "a", ts: 1.5 }, DEFAULT_LIMITS)).toThrow(/ts must be a whole number/);
  });

  it("keeps data that holds NUL characters and lone surrogates: values are stored as JSON text", () => {
    expect(parseEvents({ name: "a", data: { s: "\u0000\ud800" } }, DEFAULT_LIMITS)[0]!.data).toEqual({ s: "\u0000\ud800" });
  });
});
