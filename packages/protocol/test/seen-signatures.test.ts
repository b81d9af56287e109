import { SIGNATURE_TOLERANCE_SECONDS } from "../src/signing.ts";
import { describe, expect, it } from "vitest";
import { SeenSignatures } from "../src/seen-signatures.ts";

describe("seen signatures", () => {
  it("knows a signature again for as long as it could verify, and forgets it after", () => {
    const seen = new SeenSignatures();
    const t0 = 1_700_000_000_000;
    const window = SIGNATURE_TOLERANCE_SECONDS * 1000;
    expect(seen.firstTime("t=1,s=aa", t0)).toBe(true);
    expect(seen.firstTime("t=1,s=aa", t0 + 2 * window - 1)).toBe(false);
    expect(seen.firstTime("t=1,s=bb", t0 + 2 * window - 1)).toBe(true);
    expect(seen.firstTime("t=1,s=aa", t0 + 2 * window)).toBe(true);
  });

  it("knows a signature again however its timestamp is written", () => {
    const seen = new SeenSignatures();
    expect(seen.firstTime("t=1700000000,s=cc")).toBe(true);
    expect(seen.firstTime("t=01700000000,s=cc")).toBe(false);
    expect(seen.firstTime(" t=1700000000,s=cc ")).toBe(false);
  });
});
