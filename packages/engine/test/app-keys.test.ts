import { describe, expect, it } from "vitest";
import { parseAppSigningKeys, signingKeyOf } from "../src/invoker.ts";

describe("apps' own signing keys", () => {
  it("reads app=key pairs, and signs each app with its own key or the shared one", () => {
    const appSigningKeys = parseAppSigningKeys(" shop=k1 , billing=k=2,");
    expect(appSigningKeys).toEqual({ shop: "k1", billing: "k=2" });
    expect(signingKeyOf({ signingKey: "shared", appSigningKeys }, "shop")).toBe("k1");
    expect(signingKeyOf({ signingKey: "shared", appSigningKeys }, "other")).toBe("shared");
    // An app ID that is also an Object property name is not a key.
    expect(signingKeyOf({ signingKey: "shared", appSigningKeys }, "constructor")).toBe("shared");
    expect(parseAppSigningKeys(undefined)).toEqual({});
  });

  it.each([
    ["shop", /entry 1 is not <app id>=<key>/],
    ["=k1", /entry 1 is not <app id>=<key>/],
    ["shop=", /entry 1 is not <app id>=<key>/],
    ["shop=a,shop=b", /listed twice/],
  ])("refuses %s with what is wrong, never echoing a key", (text, message) => {
    expect(() => parseAppSigningKeys(text)).toThrow(message);
    try {
      parseAppSigningKeys(text);
    } catch (error) {
      expect(String(error)).not.toMatch(/=a|=b|k1/);
    }
  });
});
