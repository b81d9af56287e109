/**
 * A step.fetch request is kept sealed under the app's signing key until the executor makes it.
 * During a rotation the executor that seals it and the one that makes it may hold the keys the
 * other way round: any key the executor takes opens it, and none other.
 */
import { expect, it } from "vitest";
import { openRequest, sealRequest } from "../src/fetch-steps.ts";

const request = { url: "https://api.example.com/v1/charge", method: "POST", headers: { authorization: "Bearer sk_live_1" }, body: '{"amount":100}' };

it("opens a request sealed under the current key or the next one, whichever this executor lists first", async () => {
  const underNew = await sealRequest("key-new", request);
  const underOld = await sealRequest("key-old", request);
  // Not switched yet (old, next = new) and switched (new, next = old): both open both.
  for (const keys of [["key-old", "key-new"], ["key-new", "key-old"]]) {
    expect(await openRequest(keys, underNew)).toEqual(request);
    expect(await openRequest(keys, underOld)).toEqual(request);
  }
  expect(underNew).not.toContain("sk_live_1");
});

it("refuses a request sealed under a key this executor no longer has, and one whose text was changed, saying why", async () => {
  const sealed = await sealRequest("key-old", request);
  await expect(openRequest(["key-new"], sealed)).rejects.toThrow(/sealed under a key the executor no longer has, or changed\): during a rotation, keep the old key as STEPWISE_SIGNING_KEY_NEXT/);
  const [version, iv, data] = sealed.split(".") as [string, string, string];
  const changed = `${version}.${iv}.${data.slice(0, -4)}${data.slice(-4) === "AAAA" ? "BBBB" : "AAAA"}`;
  await expect(openRequest(["key-old"], changed)).rejects.toThrow(/does not open with this executor's signing keys/);
  await expect(openRequest(["key-old"], "v0.x.y")).rejects.toThrow(/not one this executor sealed/);
});
