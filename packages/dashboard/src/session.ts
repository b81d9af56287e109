/**
 * Who may use the dashboard. In dev mode it is open, like the rest of the API. Otherwise a
 * person signs in with `STEPWISE_DASHBOARD_KEY` and gets a session cookie: signed (HMAC under
 * a key derived from the dashboard key, so no session survives a change of key), HttpOnly (no
 * script reads it), SameSite=Strict (no other site's page sends it), and expiring. Every request
 * that changes something also carries the session's CSRF token in a header, which a form or a
 * link from another site cannot set: the token is derived from the session, and the page reads
 * it from `GET /dashboard/session`, which another origin's script cannot read.
 */
import { hmacSha256Hex, keyMatches } from "@stepwise/protocol";

export const SESSION_COOKIE = "stepwise_session";
export const CSRF_HEADER = "x-stepwise-csrf";
/** How long a sign-in lasts. */
export const SESSION_MS = 12 * 3_600_000;

export interface DashboardOptions {
  /** Dev mode: no sign-in (the API is open too). */
  open: boolean;
  /** The key a person signs in with (`STEPWISE_DASHBOARD_KEY`); without one, outside dev mode, the dashboard is off. */
  key?: string;
}

/** A signed-in person's session, as its cookie proves it. */
export interface Session {
  id: string;
  /** The token every request that changes something must carry in {@link CSRF_HEADER}. */
  csrf: string;
}

export class DashboardAccess {
  constructor(readonly options: DashboardOptions) {}

  /** Whether the executor serves the dashboard at all. */
  get enabled(): boolean {
    return this.options.open || !!this.options.key;
  }

  /** Whether `given` is the dashboard key. */
  async keyMatches(given: string): Promise<boolean> {
    return !!this.options.key && (await keyMatches(given, [this.options.key]));
  }

  /** A new session's cookie value, good until `now + SESSION_MS`. */
  async newSession(nowMs = Date.now()): Promise<{ cookie: string; session: Session }> {
    const id = randomHex(16);
    const payload = `${nowMs + SESSION_MS}.${id}`;
    const cookie = `${payload}.${await this.mac(`session\n${payload}`)}`;
    return { cookie, session: { id, csrf: await this.mac(`csrf\n${id}`) } };
  }

  /** The session a cookie value proves, or null (absent, tampered, expired, signed under another key). */
  async readSession(cookie: string | undefined, nowMs = Date.now()): Promise<Session | null> {
    if (!cookie || !this.options.key) return null;
    const match = /^(\d{1,15})\.([0-9a-f]{32})\.([0-9a-f]{64})$/.exec(cookie);
    if (!match) return null;
    const [, expires, id, mac] = match;
    if (Number(expires) <= nowMs) return null;
    if (!(await keyMatches(mac!, [await this.mac(`session\n${expires}.${id}`)]))) return null;
    return { id: id!, csrf: await this.mac(`csrf\n${id}`) };
  }

  /** Whether `given` is the session's CSRF token. */
  async csrfMatches(session: Session, given: string | undefined): Promise<boolean> {
    return !!given && (await keyMatches(given, [session.csrf]));
  }

  private mac(text: string): Promise<string> {
    // A key of its own for sessions: the dashboard key itself is never what signs anything.
    return hmacSha256Hex(`stepwise-dashboard-session\n${this.options.key}`, text);
  }
}

function randomHex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}
