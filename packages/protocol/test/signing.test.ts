import { describe, expect, it } from "vitest";
import { sign, verify } from "../src/signing.ts";

const body = JSON.stringify({ run: { id: "r1" }, data: "é ✓" });

describe("request signatures", () => {
  it("verifies what was signed with the key", async () => {
    expect(await verify(await sign("k1", body), body, ["k1"])).toEqual({ ok: true });
  });

  it("accepts the current or the next key (rotation)", async () => {
    expect((await verify(await sign("next", body), body, ["current", "next"])).ok).toBe(true);
    expect((await verify(await sign("current", body), body, ["current", "next"])).ok).toBe(true);
  });

  it("rejects a missing header", async () => {
    expect(await verify(undefined, body, ["k1"])).toMatchObject({ ok: false, problem: "missing" });
  });

  it("rejects a malformed header", async () => {
    expect(await verify("garbage", body, ["k1"])).toMatchObject({ ok: false, problem: "malformed" });
    expect(await verify("t=abc,s=00", body, ["k1"])).toMatchObject({ ok: false, problem: "malformed" });
  });

  it("rejects a tampered body, and a signature by another key", async () => {
    const header = await sign("k1", body);
    expect(await verify(header, body.replace("r1", "r2"), ["k1"])).toMatchObject({ ok: false, problem: "mismatch" });
    expect(await verify(header, body, ["k2"])).toMatchObject({ ok: false, problem: "mismatch" });
  });

  it("rejects a signature older or newer than five minutes", async () => {
    const now = Date.now();
    expect(await verify(await sign("k1", body, now - 301_000), body, ["k1"], now)).toMatchObject({ ok: false, problem: "stale" });
    expect(await verify(await sign("k1", body, now + 301_000), body, ["k1"], now)).toMatchObject({ ok: false, problem: "stale" });
    expect((await verify(await sign("k1", body, now - 200_000), body, ["k1"], now)).ok).toBe(true);
  });

  it("binds the timestamp: a fresh timestamp on an old signature does not verify", async () => {
    const old = await sign("k1", body, Date.now() - 600_000);
    const digest = old.split("s=")[1];
    const forged = `t=${Math.floor(Date.now() / 1000)},s=${digest}`;
    expect(await verify(forged, body, ["k1"])).toMatchObject({ ok: false, problem: "mismatch" });
  });
});
