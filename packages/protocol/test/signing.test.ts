import { describe, expect, it } from "vitest";
import { keyMatches, requestTarget, signatureHeaderProblem, sign, SIGNATURE_TOLERANCE_SECONDS, verify } from "../src/signing.ts";

const body = JSON.stringify({ run: { id: "r1" }, data: "é ✓" });
const request = { method: "POST", target: "/api/durable?fnId=fulfil", body };

describe("request signatures", () => {
  it("are HMAC-SHA256 over t, method, target and body, as WebCrypto computes it (Workers sign with WebCrypto, Node with node:crypto)", async () => {
    const header = await sign("k1", request, 1_795_306_100_000);
    const key = await crypto.subtle.importKey("raw", new TextEncoder().encode("k1"), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`1795306100\nPOST\n${request.target}\n${body}`));
    const hex = [...new Uint8Array(mac)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
    expect(header).toBe(`t=1795306100,s=${hex}`);
  });

  it("verifies what was signed with the key", async () => {
    expect(await verify(await sign("k1", request), request, ["k1"])).toEqual({ ok: true });
  });

  it("accepts the current or the next key (rotation)", async () => {
    expect((await verify(await sign("next", request), request, ["current", "next"])).ok).toBe(true);
    expect((await verify(await sign("current", request), request, ["current", "next"])).ok).toBe(true);
  });

  it("rejects a missing header", async () => {
    expect(await verify(undefined, request, ["k1"])).toMatchObject({ ok: false, problem: "missing" });
  });

  it("rejects a malformed header", async () => {
    expect(await verify("garbage", request, ["k1"])).toMatchObject({ ok: false, problem: "malformed" });
    expect(await verify("t=abc,s=00", request, ["k1"])).toMatchObject({ ok: false, problem: "malformed" });
    expect(await verify(`t=1,s=${"0".repeat(63)}`, request, ["k1"])).toMatchObject({ ok: false, problem: "malformed" });
    // One timestamp, one spelling: a zero in front would let a replay look like a new header.
    const header = await sign("k1", request);
    expect(await verify(header.replace("t=", "t=0"), request, ["k1"])).toMatchObject({ ok: false, problem: "malformed" });
  });

  it("rejects a tampered body, and a signature by another key", async () => {
    const header = await sign("k1", request);
    expect(await verify(header, { ...request, body: body.replace("r1", "r2") }, ["k1"])).toMatchObject({ ok: false, problem: "mismatch" });
    expect(await verify(header, request, ["k2"])).toMatchObject({ ok: false, problem: "mismatch" });
  });

  it("binds the method, the path and the query: a captured request verifies only where it was sent", async () => {
    const header = await sign("k1", request);
    expect(await verify(header, { ...request, target: "/api/durable?fnId=refund" }, ["k1"])).toMatchObject({ problem: "mismatch" });
    expect(await verify(header, { ...request, target: "/other/api/durable?fnId=fulfil" }, ["k1"])).toMatchObject({ problem: "mismatch" });
    expect(await verify(header, { ...request, method: "PUT" }, ["k1"])).toMatchObject({ problem: "mismatch" });
    // The method is compared upper-cased; a receiver known by two paths may offer both.
    expect((await verify(header, { ...request, method: "post" }, ["k1"])).ok).toBe(true);
    expect((await verify(header, { method: "POST", targets: ["/internal?fnId=fulfil", request.target], body }, ["k1"])).ok).toBe(true);
  });

  it(`rejects a signature older or newer than ${SIGNATURE_TOLERANCE_SECONDS} seconds`, async () => {
    const now = Date.now();
    const window = SIGNATURE_TOLERANCE_SECONDS * 1000;
    expect(await verify(await sign("k1", request, now - window - 1_000), request, ["k1"], now)).toMatchObject({ ok: false, problem: "stale" });
    expect(await verify(await sign("k1", request, now + window + 1_000), request, ["k1"], now)).toMatchObject({ ok: false, problem: "stale" });
    expect((await verify(await sign("k1", request, now - window + 5_000), request, ["k1"], now)).ok).toBe(true);
  });

  it("binds the timestamp: a fresh timestamp on an old signature does not verify", async () => {
    const old = await sign("k1", request, Date.now() - 600_000);
    const digest = old.split("s=")[1];
    const forged = `t=${Math.floor(Date.now() / 1000)},s=${digest}`;
    expect(await verify(forged, request, ["k1"])).toMatchObject({ ok: false, problem: "mismatch" });
  });

  it("tells a header of the right shape from anything else before the body is read", async () => {
    expect(signatureHeaderProblem(await sign("k1", request))).toBeNull();
    for (const header of [null, undefined, ""]) expect(signatureHeaderProblem(header)).toMatchObject({ problem: "missing" });
    for (const header of ["t=1", "s=ab,t=1", `t=1,s=${"g".repeat(64)}`, `t=1,s=${"a".repeat(64)},x=1`]) {
      expect(signatureHeaderProblem(header)).toMatchObject({ problem: "malformed" });
    }
  });

  it("takes the target from a URL as path and query", () => {
    expect(requestTarget("https://shop.example/api/durable?fnId=a%20b")).toBe("/api/durable?fnId=a%20b");
    expect(requestTarget(new URL("http://127.0.0.1:3000/"))).toBe("/");
  });

  it("matches a bearer key against the current and next keys, and nothing else", async () => {
    expect(await keyMatches("next", ["current", "next"])).toBe(true);
    expect(await keyMatches("current", ["current", "next"])).toBe(true);
    for (const given of ["", "curren", "current ", "CURRENT", "currentx"]) expect(await keyMatches(given, ["current", "next"])).toBe(false);
    expect(await keyMatches("any", [])).toBe(false);
  });
});
