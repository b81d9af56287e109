import { describe, expect, it } from "vitest";
import { toMs } from "../src/duration.ts";

describe("toMs", () => {
  it.each([
    [250, 250],
    ["500ms", 500],
    ["30s", 30_000],
    ["5m", 300_000],
    ["2h", 7_200_000],
    ["1d", 86_400_000],
    ["1w", 604_800_000],
    ["1h30m", 5_400_000],
    ["1.5s", 1_500],
    [" 2 m ", 120_000],
  ])("reads %j as %i ms", (input, ms) => {
    expect(toMs(input)).toBe(ms);
  });

  it.each(["", "5", "5 minutes", "m5", "-1s", "1y", "5s garbage"])("rejects %j with a message that shows the format", (input) => {
    expect(() => toMs(input)).toThrow(/Invalid duration .*"30s"/);
  });

  it("rejects negative and non-finite numbers", () => {
    expect(() => toMs(-1)).toThrow(RangeError);
    expect(() => toMs(Number.NaN)).toThrow(RangeError);
    expect(() => toMs(Infinity)).toThrow(RangeError);
  });
});
