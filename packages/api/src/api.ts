/**
 * The executor's HTTP API, on Hono: events in, apps registering, runs out.
 *
 *   POST /api/events               one event or an array; 200 { ids } once stored
 *   POST /api/signals              { signal, data?, id? }: resumes the run waiting for it; 404 when none does
 *   POST /api/callbacks/:token     a callback URL's one POST, for its run (no key: the token is the capability)
 *   POST /api/apps                 an app registers itself (signed with the signing key)
 *   POST /api/checkpoints          an app commits a step result mid-invocation (signed likewise)
 *   POST /api/step-outputs         an app reads stored outputs its invocation left out (signed likewise)
 *   POST /api/publish              an app sends what a run published for its stream (signed likewise)
 *   GET  /api/functions            registered functions
 *   GET  /api/runs                 runs, newest first: ?function=&status=&since=&until=&cursor=&limit=
 *   GET  /api/runs/:runId          a run with its steps
 *   GET  /api/runs/:runId/stream   the run's transitions and published messages as server-sent events
 *                                  (API key, or ?token= a stream token the run's app minted)
 *   POST /api/runs/:runId/cancel   cancels a live run
 *   POST /api/runs/:runId/replay   a new run from the same event, on the current code
 *   POST /api/runs/:runId/rerun    { fromStep, output? }: a new run keeping the steps before fromStep
 *   POST /api/runs/:runId/pause    a live run is invoked no further, its timers hold, until /resume
 *   POST /api/functions/:id/pause  a function's new runs start held until /resume ({ held?: "run" | "skip" })
 *   POST /api/runs/cancel?…        cancels a page of the live runs the list's filters select
 *   POST /api/runs/replay?…        replays a page of the runs the list's filters select
 *   GET  /api/events               events, newest first, each with its runs: ?name=&since=&until=&cursor=&limit=
 *   GET  /api/events/:eventId      an event with the runs it started
 *   GET  /metrics                  Prometheus metrics (the Node executor)
 *   GET  /api/events/:eventId/runs the runs an event started
 *
 * Keys by purpose, outside dev mode: events and signals need the event key; the run and function routes the
 * API key (`STEPWISE_API_KEY`); registrations a signature by the signing key. An app holds the
 * signing and event keys, so neither reads or cancels runs. A person signed in to the dashboard
 * (`/`, packages/dashboard) may do what the event and API keys allow, each change carrying the
 * session's CSRF token; a browser's request from another site is refused in every mode.
 * Bad input gets a 4xx with `{ error }` saying what is wrong; nothing is stored then.
 */
import { APPS_ROUTE, CALLBACKS_ROUTE, CHECKPOINT_ROUTE, HEADERS, keyMatches, PUBLISH_ROUTE, SeenSignatures, SIGNALS_ROUTE, STEP_OUTPUTS_ROUTE, TRACEPARENT_HEADER } from "@stepwise/protocol";
import { InputError, type Executor, type RunView } from "@stepwise/engine";
import { dashboardAuthorization, DashboardAccess, mountDashboard, type DashboardOptions } from "@stepwise/dashboard";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createCheckpointHandler, tooLargeMessage } from "./checkpoint-route.ts";
import { runStream } from "./run-stream.ts";
import { bearer, callbackBody, jsonBody, parseJson, pathIds, utf8Body } from "./input.ts";
import { verifySignedByApp, type SigningKeys } from "./signed.ts";

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
  /** `GET /metrics` (Prometheus' text format), behind the API key like the run routes; absent: not served. */
  metrics?: () => Promise<{ body: string; contentType: string }>;
  /** The dashboard at `/`: open in dev mode, else only with a key to sign in with; absent: not served. */
  dashboard?: DashboardOptions;
  /**
   * Apps may register loopback and private URLs outside dev mode
   * (`STEPWISE_ALLOW_PRIVATE_APP_URLS=1`: an executor and its apps on one private network).
   */
  allowPrivateAppUrls?: boolean;
}

/** The largest request body by default: a batch of events. */
export const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;

export function createApi(options: ApiOptions): Hono {
  const { executor } = options;
  const app = new Hono();
  const maxSize = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  // A registration replayed within its window would put an app back the way it was a moment ago.
  const seenRegistrations = new SeenSignatures();

  app.onError((error, c) => {
    if (error instanceof InputError) return c.json({ error: error.message, ...(error.code && { code: error.code }) }, error.status);
    // The raw path (as sent, still percent-encoded); the logger escapes control characters.
    executor.log.error(`${c.req.method} ${new URL(c.req.url).pathname} failed: ${error instanceof Error ? error.stack : String(error)}`);
    return c.json({ error: "Internal error in the executor; see its log" }, 500);
  });

  app.get("/health", (c) => c.json({ ok: true }));

  // A page on another site can make a browser post here (a form needs no permission), with the
  // dashboard's cookie or to a dev executor that asks for no key: browsers say where a request
  // comes from, and a change from another origin is refused. (Apps and scripts send no Origin.)
  app.use("*", async (c, next) => {
    if (c.req.method === "GET" || c.req.method === "HEAD" || c.req.method === "OPTIONS") return next();
    // A callback URL is a capability: the token is the whole authority, so a form on any site may post to it.
    if (new URL(c.req.url).pathname.startsWith(`${CALLBACKS_ROUTE}/`)) return next();
    const from = crossSite(c);
    if (from) return c.json({ error: `Refused: a browser sent this ${c.req.method} from another site (${from}); the executor takes changes from its own dashboard, apps and scripts only` }, 403);
    return next();
  });

  const dashboard = options.dashboard && new DashboardAccess(options.dashboard);
  /** Events and signals need the event key outside dev mode (or a dashboard session); the answer that refuses one without it. */
  const eventKeyRefusal = async (c: Context): Promise<Response | undefined> => {
    if (options.dev) return undefined;
    const given = bearer(c);
    const viaDashboard = given ? undefined : await dashboardAuthorization(c, dashboard);
    if (viaDashboard) return c.json({ error: viaDashboard.error }, viaDashboard.status);
    if (viaDashboard !== undefined) return undefined;
    if (!given) return c.json({ error: "Missing event key: send Authorization: Bearer <STEPWISE_EVENT_KEY>" }, 401);
    if (!options.eventKey || !(await keyMatches(given, [options.eventKey]))) return c.json({ error: "Invalid event key" }, 401);
    return undefined;
  };
  if (dashboard) mountDashboard(app, dashboard);
  app.notFound((c) =>
    c.json({ error: `No ${c.req.method} ${new URL(c.req.url).pathname} here: the API has POST /api/events, POST /api/signals, POST /api/callbacks/:token, POST /api/apps, POST /api/checkpoints, POST /api/step-outputs, POST /api/publish, GET /api/functions, GET /api/runs, GET /api/runs/:runId, GET /api/runs/:runId/stream, POST /api/runs/:runId/cancel, POST /api/runs/:runId/replay, POST /api/runs/:runId/rerun, POST /api/runs/:runId/pause, POST /api/runs/:runId/resume, POST /api/functions/:functionId/pause, POST /api/functions/:functionId/resume, POST /api/runs/cancel, POST /api/runs/replay, GET /api/events, GET /api/events/:eventId, GET /api/events/:eventId/runs` }, 404),
  );

  app.post(
    "/api/events",
    bodyLimit({
      maxSize,
      onError: (c) => c.json({ error: `Request body too large: the limit is ${maxSize} bytes; send fewer events per request` }, 413),
    }),
    async (c) => (await eventKeyRefusal(c)) ?? c.json(await executor.sendEvents(await jsonBody(c), { traceparent: c.req.header(TRACEPARENT_HEADER) })),
  );

  // A callback URL's one POST: no key, the token is the capability (callback-urls.ts).
  app.post(`${CALLBACKS_ROUTE}/:token`, bodyLimit({ maxSize, onError: (c) => c.json({ error: `Request body too large: the limit is ${maxSize} bytes` }, 413) }), async (c) =>
    c.json(await executor.receiveCallback(c.req.param("token"), { body: await callbackBody(c), headers: c.req.raw.headers.entries() })),
  );
  app.get(`${CALLBACKS_ROUTE}/:token`, (c) => c.json({ error: "A callback URL takes one POST (its body and headers go to the waiting run); it cannot be opened with GET" }, 405));

  // A signal resumes the one run waiting for it, or answers 404 after a grace period (signal-delivery.ts).
  app.post(
    SIGNALS_ROUTE,
    bodyLimit({ maxSize, onError: (c) => c.json({ error: `Request body too large: the limit is ${maxSize} bytes; send a reference instead of the data` }, 413) }),
    // The request's signal: a sender that gave up is not delivered to afterwards.
    async (c) => (await eventKeyRefusal(c)) ?? c.json(await executor.sendSignal(await jsonBody(c), { abort: c.req.raw.signal })),
  );

  const keys: SigningKeys = { dev: options.dev, signingKeys: options.signingKeys, appSigningKeys: options.appSigningKeys };
  const tooLargeAnswer = (c: Context) => c.json({ error: tooLargeMessage(maxSize) }, 413);

  app.post(APPS_ROUTE, bodyLimit({ maxSize, onError: tooLargeAnswer }), async (c) => {
    const appIdOf = (body: unknown) => (body as { appId?: unknown } | null)?.appId;
    const signed = await verifySignedByApp(keys, "App registration", APPS_ROUTE, c.req.header(HEADERS.signature), () => utf8Body(c), appIdOf);
    if ("refusal" in signed) return c.json(signed.refusal.body, signed.refusal.status);
    // In dev mode the key is public, so there is nothing to protect, and a quick second PUT is normal.
    if (!options.dev && !seenRegistrations.firstTime(signed.header)) return c.json({ error: "App registration rejected: this signed registration was already received (a replay)" }, 401);
    const synced = await executor.syncApp(signed.body, { urlPolicy: { allowPrivate: options.dev || !!options.allowPrivateAppUrls } });
    executor.log.info(`app ${synced.appId} synced${synced.version ? ` (version ${synced.version})` : ""} with ${synced.functions.length} function(s): ${synced.functions.join(", ")}`);
    return c.json({ ok: true, ...synced });
  });

  // The same route the Node executor serves without Hono (see checkpoint-route.ts).
  const checkpoint = createCheckpointHandler(executor, keys);
  app.post(CHECKPOINT_ROUTE, bodyLimit({ maxSize, onError: tooLargeAnswer }), async (c) => {
    const answer = await checkpoint({ signature: c.req.header(HEADERS.signature), text: () => utf8Body(c) });
    return c.json(answer.body, answer.status);
  });

  // A read, so no replay memory: a replayed request reads what its sender could read anyway.
  app.post(STEP_OUTPUTS_ROUTE, bodyLimit({ maxSize, onError: tooLargeAnswer }), async (c) => {
    const appIdOf = (body: unknown) => (body as { run?: { appId?: unknown } } | null)?.run?.appId;
    const missing = "Not a Stepwise step-outputs request: run.appId is missing";
    const signed = await verifySignedByApp(keys, "Step outputs request", STEP_OUTPUTS_ROUTE, c.req.header(HEADERS.signature), () => utf8Body(c), appIdOf, missing);
    if ("refusal" in signed) return c.json(signed.refusal.body, signed.refusal.status);
    return c.json(await executor.stepOutputs(signed.body, signed.appId as string));
  });

  // What a run publishes for its stream, signed by its app (live-messages.ts). Not replay-guarded:
  // a replayed publish repeats progress, which changes no run.
  app.post(PUBLISH_ROUTE, bodyLimit({ maxSize, onError: tooLargeAnswer }), async (c) => {
    const appIdOf = (body: unknown) => (body as { run?: { appId?: unknown } } | null)?.run?.appId;
    const signed = await verifySignedByApp(keys, "Publish", PUBLISH_ROUTE, c.req.header(HEADERS.signature), () => utf8Body(c), appIdOf, "Not a Stepwise publish: run.appId is missing");
    if ("refusal" in signed) return c.json(signed.refusal.body, signed.refusal.status);
    return c.json({ ok: true, ...(await executor.publish(signed.body, signed.appId as string)) });
  });

  // Runs hold users' data: outside dev mode, reading or cancelling them needs the API key (not a key apps hold).
  const management = async (c: Context, next: () => Promise<void>) => {
    if (options.dev || readersWithToken.has(c.req.raw)) return next();
    if (!bearer(c)) {
      const viaDashboard = await dashboardAuthorization(c, dashboard);
      if (viaDashboard === null) return next();
      if (viaDashboard) return c.json({ error: viaDashboard.error }, viaDashboard.status);
    }
    if (!options.apiKey) {
      return c.json({ error: "The run API is closed: set STEPWISE_API_KEY on the executor, then send Authorization: Bearer <STEPWISE_API_KEY>" }, 401);
    }
    const given = bearer(c);
    if (!given || !(await keyMatches(given, [options.apiKey]))) {
      return c.json({ error: "This API needs Authorization: Bearer <STEPWISE_API_KEY>" }, 401);
    }
    return next();
  };
  // (Also /api/functions itself, as below.)
  app.use("/api/functions/*", management);
  app.use("/api/functions/:functionId/*", pathIds);
  const readersWithToken = new WeakSet<Request>();
  // A page may follow its own run with a stream token its app minted (`stepwise.streamToken`):
  // the token is the authority, for that run's stream only, from any origin (no cookie is sent).
  app.use("/api/runs/:runId/stream", async (c, next) => {
    const token = c.req.query("token");
    if (token === undefined) return next();
    if (!(await executor.streamTokenAllows(token, c.req.param("runId")))) {
      // Readable by the page, so its client can tell a refusal from a network failure and stop.
      c.header("access-control-allow-origin", "*");
      return c.json({ error: "This stream token is expired, altered, or for another run: ask the app for a new one (stepwise.streamToken(runId))" }, 401);
    }
    readersWithToken.add(c.req.raw);
    await next();
    c.header("access-control-allow-origin", "*");
  });
  // (Also /api/runs itself: Hono's "/*" matches the bare path too.)
  app.use("/api/runs/*", management);
  app.use("/api/events/:eventId/runs", management);
  app.use("/api/events/:eventId", pathIds);
  app.use("/api/runs/:runId/*", pathIds);
  app.use("/api/runs/:runId", pathIds);
  app.use("/api/events/:eventId/runs", pathIds);

  /** A run, or the 404 of a run ID nobody knows. */
  const orNoRun = (c: Context, run: RunView | null) => (run ? c.json(run) : c.json({ error: `No run ${c.req.param("runId")}` }, 404));

  const { metrics } = options;
  if (metrics) {
    app.get("/metrics", management, async (c) => {
      const { body, contentType } = await metrics();
      return c.body(body, 200, { "content-type": contentType });
    });
  }

  app.get("/api/functions", async (c) => c.json({ functions: await executor.listFunctions() }));

  // Bulk actions before the routes of one run, whose :runId would take "cancel" and "replay".
  app.post("/api/runs/cancel", async (c) => c.json(await executor.cancelRuns(c.req.queries())));
  app.post("/api/runs/replay", async (c) => c.json(await executor.replayRuns(c.req.queries())));

  app.get("/api/runs", async (c) => c.json(await executor.listRuns(c.req.queries())));

  app.get("/api/runs/:runId", async (c) => orNoRun(c, await executor.getRun(c.req.param("runId"))));

  app.get("/api/runs/:runId/stream", (c) => runStream(c, executor, c.req.param("runId")));

  app.post("/api/runs/:runId/cancel", async (c) => orNoRun(c, await executor.cancelRun(c.req.param("runId"))));

  app.post("/api/runs/:runId/replay", async (c) => orNoRun(c, await executor.replayRun(c.req.param("runId"))));

  app.post("/api/runs/:runId/rerun", bodyLimit({ maxSize, onError: tooLargeAnswer }), async (c) => orNoRun(c, await executor.rerunRun(c.req.param("runId"), await jsonBody(c))));

  app.post("/api/runs/:runId/pause", async (c) => orNoRun(c, await executor.pauseRun(c.req.param("runId"))));

  app.post("/api/runs/:runId/resume", async (c) => orNoRun(c, await executor.resumeRun(c.req.param("runId"))));

  const noFunction = (c: Context) => c.json({ error: `No function ${c.req.param("functionId")}: GET /api/functions lists them (IDs are <app>-<function>)` }, 404);

  app.post("/api/functions/:functionId/pause", async (c) => {
    const fn = await executor.pauseFunction(c.req.param("functionId")!);
    return fn ? c.json(fn) : noFunction(c);
  });

  app.post("/api/functions/:functionId/resume", bodyLimit({ maxSize, onError: tooLargeAnswer }), async (c) => {
    const text = await utf8Body(c);
    const resumed = await executor.resumeFunction(c.req.param("functionId")!, text.trim() === "" ? {} : parseJson(text));
    return resumed ? c.json(resumed) : noFunction(c);
  });

  // Events hold users' data: listing them needs the API key, unlike sending them.
  app.get("/api/events", management, async (c) => c.json(await executor.listEvents(c.req.queries())));

  // (The key check on the route itself: HEAD is answered by GET's handler.)
  app.get("/api/events/:eventId", management, async (c) => {
    const event = await executor.getEvent(c.req.param("eventId")!);
    return event ? c.json(event) : c.json({ error: `No event ${c.req.param("eventId")} (or it was pruned with its runs)` }, 404);
  });

  app.get("/api/events/:eventId/runs", async (c) => c.json({ runs: await executor.listRunsForEvent(c.req.param("eventId")) }));

  return app;
}

/**
 * The other site a browser says this request comes from, or undefined. Browsers send
 * Sec-Fetch-Site; older ones only Origin, compared by host (a TLS proxy in front changes the
 * scheme the executor sees, not the host).
 */
function crossSite(c: Context): string | undefined {
  const site = c.req.header("sec-fetch-site");
  if (site) return site === "same-origin" || site === "none" ? undefined : `Sec-Fetch-Site: ${site}`;
  const origin = c.req.header("origin");
  if (!origin) return undefined;
  const host = c.req.header("x-forwarded-host") ?? c.req.header("host");
  let originHost: string | undefined;
  try {
    originHost = new URL(origin).host;
  } catch {
    originHost = undefined;
  }
  return originHost !== undefined && originHost === host ? undefined : `Origin: ${origin.slice(0, 100)}`;
}
