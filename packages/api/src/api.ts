/**
 * The executor's HTTP API, on Hono: events in, apps registering, runs out.
 *
 *   POST /api/events               one event or an array; 200 { ids } once stored
 *   POST /api/apps                 an app registers itself (signed with the signing key)
 *   GET  /api/functions            registered functions
 *   GET  /api/runs/:runId          a run with its steps
 *   POST /api/runs/:runId/cancel   cancels a live run
 *   GET  /api/events/:eventId/runs the runs an event started
 *
 * Keys by purpose, outside dev mode: events need the event key; the run and function routes the
 * API key (`STEPWISE_API_KEY`); registrations a signature by the signing key. An app holds the
 * signing and event keys, so neither reads or cancels runs.
 * Bad input gets a 4xx with `{ error }` saying what is wrong; nothing is stored then.
 */
import {
  APPS_ROUTE,
  DEV_SIGNING_KEY,
  HEADERS,
  keyMatches,
  MAX_EVENT_ID_LENGTH,
  SeenSignatures,
  signatureHeaderProblem,
  textProblem,
  verify,
} from "@stepwise/protocol";
import { InputError, type Executor } from "@stepwise/engine";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";

export interface ApiOptions {
  executor: Executor;
  /** Dev mode: any event key is accepted, apps may sign with the public dev key. */
  dev: boolean;
  /** Keys apps sign their registration with (current and next). */
  signingKeys: string[];
  /** Apps with keys of their own, by app ID: only that key registers such an app. */
  appSigningKeys?: Readonly<Record<string, string>>;
  /** Required as `Authorization: Bearer …` on POST /api/events outside dev mode. */
  eventKey?: string;
  /** Required as `Authorization: Bearer …` on the run and function routes outside dev mode; without it they are closed. */
  apiKey?: string;
  /** Largest request body (a batch of events). */
  maxBodyBytes?: number;
  /**
   * Apps may register loopback and private URLs outside dev mode
   * (`STEPWISE_ALLOW_PRIVATE_APP_URLS=1`: an executor and its apps on one private network).
   */
  allowPrivateAppUrls?: boolean;
}

export function createApi(options: ApiOptions): Hono {
  const { executor } = options;
  const app = new Hono();
  const maxSize = options.maxBodyBytes ?? 16 * 1024 * 1024;
  // A registration replayed within its window would put an app back the way it was a moment ago.
  const seenRegistrations = new SeenSignatures();

  app.onError((error, c) => {
    if (error instanceof InputError) return c.json({ error: error.message }, error.status);
    // The raw path (as sent, still percent-encoded); the logger escapes control characters.
    executor.log.error(`${c.req.method} ${new URL(c.req.url).pathname} failed: ${error instanceof Error ? error.stack : String(error)}`);
    return c.json({ error: "Internal error in the executor; see its log" }, 500);
  });

  app.get("/health", (c) => c.json({ ok: true }));
  app.notFound((c) =>
    c.json({ error: `No ${c.req.method} ${new URL(c.req.url).pathname} here: the API has POST /api/events, POST /api/apps, GET /api/functions, GET /api/runs/:runId, POST /api/runs/:runId/cancel, GET /api/events/:eventId/runs` }, 404),
  );

  app.post(
    "/api/events",
    bodyLimit({
      maxSize,
      onError: (c) => c.json({ error: `Request body too large: the limit is ${maxSize} bytes; send fewer events per request` }, 413),
    }),
    async (c) => {
      if (!options.dev) {
        const given = bearer(c);
        if (!given) return c.json({ error: "Missing event key: send Authorization: Bearer <STEPWISE_EVENT_KEY>" }, 401);
        if (!options.eventKey || !(await keyMatches(given, [options.eventKey]))) return c.json({ error: "Invalid event key" }, 401);
      }
      return c.json(await executor.sendEvents(await jsonBody(c)));
    },
  );

  app.post(APPS_ROUTE, bodyLimit({ maxSize, onError: (c) => c.json({ error: `Request body too large: the limit is ${maxSize} bytes` }, 413) }), async (c) => {
    const header = c.req.header(HEADERS.signature);
    const shape = signatureHeaderProblem(header);
    if (shape) return c.json({ error: `App registration rejected: ${shape.message}` }, 401);
    const raw = await utf8Body(c);
    const body = parseJson(raw);
    // An app with a key of its own is registered by that key alone: the shared one cannot claim its ID.
    const claimed = (body as { appId?: unknown } | null)?.appId;
    const own = typeof claimed === "string" && options.appSigningKeys && Object.hasOwn(options.appSigningKeys, claimed) ? options.appSigningKeys[claimed] : undefined;
    const keys = own ? [own] : options.dev ? [...options.signingKeys, DEV_SIGNING_KEY] : options.signingKeys;
    const check = await verify(header, { method: "POST", target: APPS_ROUTE, body: raw }, keys);
    if (!check.ok) return c.json({ error: `App registration rejected: ${check.message}${own ? ` (app "${claimed}" has a key of its own)` : ""}` }, 401);
    // In dev mode the key is public, so there is nothing to protect, and a quick second PUT is normal.
    if (!options.dev && !seenRegistrations.firstTime(header!)) return c.json({ error: "App registration rejected: this signed registration was already received (a replay)" }, 401);
    const synced = await executor.syncApp(body, { urlPolicy: { allowPrivate: options.dev || !!options.allowPrivateAppUrls } });
    executor.log.info(`app ${synced.appId} synced with ${synced.functions.length} function(s): ${synced.functions.join(", ")}`);
    return c.json({ ok: true, ...synced });
  });

  // Runs hold users' data: outside dev mode, reading or cancelling them needs the API key (not a key apps hold).
  const management = async (c: Context, next: () => Promise<void>) => {
    if (options.dev) return next();
    if (!options.apiKey) {
      return c.json({ error: "The run API is closed: set STEPWISE_API_KEY on the executor, then send Authorization: Bearer <STEPWISE_API_KEY>" }, 401);
    }
    const given = bearer(c);
    if (!given || !(await keyMatches(given, [options.apiKey]))) {
      return c.json({ error: "This API needs Authorization: Bearer <STEPWISE_API_KEY>" }, 401);
    }
    return next();
  };
  app.use("/api/functions", management);
  app.use("/api/runs/*", management);
  app.use("/api/events/:eventId/runs", management);
  app.use("/api/runs/:runId/*", pathIds);
  app.use("/api/runs/:runId", pathIds);
  app.use("/api/events/:eventId/runs", pathIds);

  app.get("/api/functions", async (c) => c.json({ functions: await executor.listFunctions() }));

  app.get("/api/runs/:runId", async (c) => {
    const run = await executor.getRun(c.req.param("runId"));
    return run ? c.json(run) : c.json({ error: `No run ${c.req.param("runId")}` }, 404);
  });

  app.post("/api/runs/:runId/cancel", async (c) => {
    const run = await executor.cancelRun(c.req.param("runId"));
    return run ? c.json(run) : c.json({ error: `No run ${c.req.param("runId")}` }, 404);
  });

  app.get("/api/events/:eventId/runs", async (c) => c.json({ runs: await executor.listRunsForEvent(c.req.param("eventId")) }));

  return app;
}

/** IDs in the path are text a store can hold, or the request is refused before any query. */
async function pathIds(c: Context, next: () => Promise<void>): Promise<Response | void> {
  for (const [name, value] of Object.entries(c.req.param() as Record<string, string>)) {
    const problem = textProblem(value) ?? (value.length > MAX_EVENT_ID_LENGTH ? `is longer than ${MAX_EVENT_ID_LENGTH} characters` : null);
    if (problem) return c.json({ error: `Invalid ${name} in the path: it ${problem}` }, 400);
  }
  return next();
}

function bearer(c: Context): string | undefined {
  const header = c.req.header("authorization");
  return header?.startsWith("Bearer ") ? header.slice(7).trim() : undefined;
}

async function jsonBody(c: Context): Promise<unknown> {
  return parseJson(await utf8Body(c));
}

/** The body as text; bytes that are not UTF-8 are refused, not replaced with U+FFFD in silence. */
async function utf8Body(c: Context): Promise<string> {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(await c.req.arrayBuffer());
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    throw new InputError("Body is not valid UTF-8; send JSON encoded as UTF-8");
  }
}

function parseJson(text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text, refuseNonFinite);
  } catch (error) {
    if (error instanceof InputError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new InputError(`Body is not valid JSON (${reason}); send Content-Type: application/json with a JSON body`);
  }
  return value;
}

/** `1e309` parses as Infinity, which JSON cannot hold: it would be stored as null without a word. */
function refuseNonFinite(key: string, value: unknown): unknown {
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new InputError(`Body has a number too large for JSON${key ? ` at "${key}"` : ""} (e.g. 1e309); send it as a string`);
  }
  return value;
}
