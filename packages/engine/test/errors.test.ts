import { describe as suite, expect, it } from "vitest";
import { describe, isUnavailable } from "../src/errors.ts";

/** What the Neon driver rejects with when its WebSocket proxy answers while Postgres is down: an ErrorEvent, not an Error. */
const errorEvent = (message: string) => ({ type: "error", message, error: new Error(message) });

suite("store errors", () => {
  it("counts an unreachable store as unavailable, however the driver wraps it", () => {
    expect(isUnavailable(Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" }))).toBe(true);
    expect(isUnavailable(new Error("query failed", { cause: Object.assign(new Error("x"), { code: "ECONNREFUSED" }) }))).toBe(true);
    expect(isUnavailable(errorEvent("Unexpected server response: 502"))).toBe(true);
    expect(isUnavailable({ type: "error", message: "", error: Object.assign(new Error("connect"), { code: "ECONNREFUSED" }) })).toBe(true);
    // A bug or a refused value is not an outage.
    expect(isUnavailable(Object.assign(new Error("invalid input syntax for type integer"), { code: "22P02" }))).toBe(false);
    expect(isUnavailable(errorEvent("Unexpected server response: 401"))).toBe(false);
  });

  it("says what went wrong in words, for an ErrorEvent too", () => {
    expect(describe(new Error("boom"))).toBe("boom");
    expect(describe(errorEvent("Unexpected server response: 502"))).toBe("Unexpected server response: 502");
    expect(describe("plain")).toBe("plain");
  });
});
