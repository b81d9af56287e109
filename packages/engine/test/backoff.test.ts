import { describe, expect, it } from "vitest";
import { backoffDelay, DEFAULT_BACKOFF, resolveBackoff } from "../src/backoff.ts";

describe("backoffDelay", () => {
  it("doubles from 1s by default and stays within [d/2, d]", () => {
    expect(backoffDelay(0, {}, () => 0)).toBe(500);
    expect(backoffDelay(0, {}, () => 1)).toBe(1_000);
    expect(backoffDelay(3, {}, () => 0)).toBe(4_000);
    expect(backoffDelay(3, {}, () => 1)).toBe(8_000);
  });

  it("caps at maxMs", () => {
    expect(backoffDelay(40, {}, () => 1)).toBe(DEFAULT_BACKOFF.maxMs);
    expect(backoffDelay(5, { initialMs: 100, maxMs: 1_000 }, () => 1)).toBe(1_000);
  });

  it("spreads retries that failed together", () => {
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(2)));
    expect(delays.size).toBeGreaterThan(10);
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(2_000);
      expect(delay).toBeLessThanOrEqual(4_000);
    }
  });

  it("ignores settings that are unset, undefined or not positive numbers, so no delay is NaN", () => {
    // What an environment reader gives when STEPWISE_RETRY_* are not set.
    const unset = { initialMs: undefined, maxMs: undefined };
    expect(resolveBackoff(DEFAULT_BACKOFF, unset)).toEqual(DEFAULT_BACKOFF);
    expect(resolveBackoff({ initialMs: Number.NaN, factor: 0 }, { maxMs: -1 })).toEqual(DEFAULT_BACKOFF);
    expect(resolveBackoff({ initialMs: 50 }, { maxMs: 500 }, undefined)).toEqual({ initialMs: 50, maxMs: 500, factor: 2 });
    for (let retry = 0; retry < 30; retry++) expect(Number.isFinite(backoffDelay(retry, unset))).toBe(true);
  });
});
