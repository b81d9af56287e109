/**
 * The dashboard's routes on the executor's Hono app: the page at `/`, its script and stylesheet
 * (from memory: `assets.ts`), and signing in and out. The API it calls is the executor's own
 * (`/api/…`), which accepts a dashboard session where it would take the API key (packages/api).
 */
import type { Context, Hono } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { DASHBOARD_CSS, DASHBOARD_JS, DASHBOARD_VERSION } from "./assets.ts";
import { CSRF_HEADER, SESSION_COOKIE, SESSION_MS, type DashboardAccess } from "./session.ts";

/** Said at `/` and in the executor's log when the dashboard is off. */
export const DASHBOARD_OFF = "The dashboard is off: set STEPWISE_DASHBOARD_KEY on the executor to turn it on (people sign in with that key)";

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Stepwise</title>
<link rel="stylesheet" href="/dashboard/app.css?v=${DASHBOARD_VERSION}">
</head>
<body>
<div id="app"></div>
<script type="module" src="/dashboard/app.js?v=${DASHBOARD_VERSION}"></script>
</body>
</html>
`;

/** Only its own script and styles, never framed by another site, nothing sent on to links. */
const PAGE_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

export function mountDashboard(app: Hono, access: DashboardAccess): void {
  // Off, it answers as the API refuses: JSON that says why (and how to turn it on).
  app.get("/", (c) => (access.enabled ? c.html(PAGE, 200, PAGE_HEADERS) : c.json({ error: DASHBOARD_OFF }, 404)));
  const asset = (body: string, type: string) => (c: Context) =>
    access.enabled ? c.body(body, 200, { "content-type": type, "x-content-type-options": "nosniff", "cache-control": "public, max-age=31536000, immutable" }) : c.json({ error: DASHBOARD_OFF }, 404);
  app.get("/dashboard/app.js", asset(DASHBOARD_JS, "text/javascript; charset=utf-8"));
  app.get("/dashboard/app.css", asset(DASHBOARD_CSS, "text/css; charset=utf-8"));

  app.get("/dashboard/session", async (c) => {
    if (access.options.open) return c.json({ open: true, signedIn: true });
    const session = await access.readSession(getCookie(c, SESSION_COOKIE));
    return session ? c.json({ open: false, signedIn: true, csrf: session.csrf }) : c.json({ open: false, signedIn: false }, 401);
  });

  app.post("/dashboard/sign-in", async (c) => {
    if (!access.enabled) return c.json({ error: DASHBOARD_OFF }, 404);
    if (access.options.open) return c.json({ csrf: "" });
    // JSON only: a form on another site cannot send it without asking first (and is refused then).
    if (!c.req.header("content-type")?.startsWith("application/json")) return c.json({ error: "Sign in with a JSON body: { \"key\": \"…\" }" }, 415);
    const body = (await c.req.json().catch(() => null)) as { key?: unknown } | null;
    if (typeof body?.key !== "string" || !(await access.keyMatches(body.key))) return c.json({ error: "Wrong dashboard key" }, 401);
    const { cookie, session } = await access.newSession();
    setCookie(c, SESSION_COOKIE, cookie, {
      httpOnly: true,
      sameSite: "Strict",
      path: "/",
      // Behind a TLS proxy the executor itself sees http: the proxy says what the browser used.
      secure: new URL(c.req.url).protocol === "https:" || c.req.header("x-forwarded-proto")?.split(",")[0]?.trim() === "https",
      maxAge: SESSION_MS / 1_000,
    });
    return c.json({ csrf: session.csrf });
  });

  app.post("/dashboard/sign-out", async (c) => {
    const session = await access.readSession(getCookie(c, SESSION_COOKIE));
    if (session && !(await access.csrfMatches(session, c.req.header(CSRF_HEADER)))) return c.json({ error: `Missing or wrong ${CSRF_HEADER} header` }, 403);
    deleteCookie(c, SESSION_COOKIE, { path: "/" });
    return c.json({ ok: true });
  });
}

/**
 * How a request to the API may act through a dashboard session: `undefined` when it has no
 * session cookie (so the caller checks its keys as usual), a refusal when the session is not
 * valid or a change lacks its CSRF token, and null when it may go on.
 */
export async function dashboardAuthorization(c: Context, access: DashboardAccess | undefined): Promise<{ status: 401 | 403; error: string } | null | undefined> {
  const cookie = getCookie(c, SESSION_COOKIE);
  if (!access || cookie === undefined) return undefined;
  const session = await access.readSession(cookie);
  if (!session) return { status: 401, error: "Dashboard session expired or not valid: sign in again" };
  if (c.req.method === "GET" || c.req.method === "HEAD") return null;
  if (!(await access.csrfMatches(session, c.req.header(CSRF_HEADER)))) {
    return { status: 403, error: `Refused: a change made with a dashboard session needs its ${CSRF_HEADER} header (the dashboard sends it; a page on another site cannot)` };
  }
  return null;
}
