/** Dashboard sessions: only a cookie this key signed, unaltered and unexpired, is one; its CSRF token is its own. */
import { describe, expect, it } from "vitest";
import { DashboardAccess, SESSION_MS } from "../src/session.ts";

describe("dashboard sessions", () => {
  const access = new DashboardAccess({ open: false, key: "k1" });

  it("reads back a session it issued, with the same CSRF token, until it expires", async () => {
    const now = Date.now();
    const { cookie, session } = await access.newSession(now);
    expect(await access.readSession(cookie, now + 1_000)).toEqual(session);
    expect(await access.csrfMatches(session, session.csrf)).toBe(true);
    expect(await access.readSession(cookie, now + SESSION_MS + 1)).toBeNull();
  });

  it("refuses a cookie altered anywhere, one signed under another key, and another session's token", async () => {
    const { cookie, session } = await access.newSession();
    const [expires, id, mac] = cookie.split(".") as [string, string, string];
    const flip = (text: string) => text.slice(0, -1) + (text.endsWith("0") ? "1" : "0");
    for (const altered of [`${Number(expires) + 1_000_000}.${id}.${mac}`, `${expires}.${flip(id)}.${mac}`, `${expires}.${id}.${flip(mac)}`, "", "garbage"]) {
      expect(await access.readSession(altered)).toBeNull();
    }
    const other = new DashboardAccess({ open: false, key: "k2" });
    expect(await other.readSession(cookie)).toBeNull();
    const second = await access.newSession();
    expect(await access.csrfMatches(session, second.session.csrf)).toBe(false);
    expect(await access.csrfMatches(session, undefined)).toBe(false);
  });

  it("is off outside dev mode without a key, and no key matches then", async () => {
    const off = new DashboardAccess({ open: false });
    expect(off.enabled).toBe(false);
    expect(await off.keyMatches("")).toBe(false);
    expect(await off.readSession((await access.newSession()).cookie)).toBeNull();
  });
});
