import { SIGNATURE_TOLERANCE_SECONDS } from "@stepwise/protocol";
import { describe, expect, it } from "vitest";
import { SeenSignatures } from "../src/seen-signatures.ts";

describe("seen signatures", () => {
  it("knows a signature again for as long as it could verify, and forgets it after", () => {
    const seen = new SeenSignatures();
    const t0 = 1_700_000_000_000;
    const window = SIGNATURE_TOLERANCE_SECONDS * 1000;
    expect(seen.firstTime("a", t0)).toBe(true);
    expect(seen.firstTime("a", t0 + 2 * window - 1)).toBe(false);
    expect(seen.firstTime("b", t0 + 2 * window - 1)).toBe(true);
    expect(seen.firstTime("a", t0 + 2 * window)).toBe(true);
  });
});
