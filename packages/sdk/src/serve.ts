/**
 * The `/api/durable` endpoint, from an {@link IncomingCall} to an {@link Answer}; every
 * framework adapter only translates to and from these (`createServeHandler` does it for a Web
 * `Request`). `GET` describes the app, `PUT` registers it with the executor, `POST ?fnId=`
 * runs one signed invocation.
 */
import {
  issuesText,
  APPS_ROUTE,
  DEV_SIGNING_KEY,
  HEADERS,
  InvokeRequestSchema,
  nodePost,
  requestTarget,
  SeenSignatures,
  sign,
  signatureHeaderProblem,
  verify,
  type InvokeRequest,
  TRACEPARENT_HEADER,
} from "@stepwise/protocol";
import { postToExecutor, type ExecutorTransport } from "./api.ts";
import { callFromRequest, RawBodyMissing, toResponse, type Answer, type IncomingCall } from "./call.ts";
import { budgetWithin, checkpointerFor } from "./checkpointing.ts";
import { leftOutputsOut, StoredOutputsUnavailable, withStoredOutputs } from "./stored-outputs.ts";
import { traceInvocation } from "./tracing.ts";
import { FailureNotices } from "./notices.ts";
import type { Stepwise } from "./client.ts";
import { MISSING_SIGNING_KEY, outgoingSigningKey, type EnvSource, type Settings } from "./env.ts";
import { StepwiseApiError } from "./errors.ts";
import { execute } from "./execution.ts";
import type { AnyStepwiseFunction } from "./function.ts";
import type { DeploymentOptions } from "./deployment.ts";
import { FunctionRegistry, SDK_VERSION } from "./registry.ts";

/** Options of `serve()`, the same for every adapter. */
export interface ServeOptions extends DeploymentOptions {
  client: Stepwise<any>;
  functions: readonly AnyStepwiseFunction[];
  /**
   * Public URL of this endpoint, given to the executor when the app registers (else
   * `STEPWISE_SERVE_URL`). Outside dev mode it is never taken from the request: its `Host`
   * header is the sender's to choose, and the executor would send every invocation there.
   */
  serveUrl?: string;
  /**
   * Largest invocation body read, in bytes (default 40 MB). The executor sends stored outputs
   * up to its `limits.maxRequestOutputBytes` (1 MB) and the app reads the rest from it, so an
   * invocation is that plus the event and one line per step. Anything larger is refused with
   * 413 before it is buffered.
   */
  maxRequestBytes?: number;
}

/** See {@link ServeOptions.maxRequestBytes}. */
export const DEFAULT_MAX_REQUEST_BYTES = 40 * 1024 * 1024;

/**
 * Outside dev mode, `PUT /api/durable` reaches the executor at most this often: anyone can
 * send it (it carries no key), and each one is a signed registration and a sync.
 */
export const REGISTRATION_INTERVAL_MS = 10_000;

const MISSING_SERVE_URL =
  "Set STEPWISE_SERVE_URL (or serve({ serveUrl })) to this endpoint's public URL: outside dev mode the URL " +
  "the executor is given is never taken from the request, whose Host header anyone can forge";

/** A Web-standard handler; `env` (a Worker's bindings) overrides `process.env` for the request. */
export type ServeHandler = (request: Request, env?: EnvSource) => Promise<Response>;

/** The endpoint on its own terms, for adapters that map their framework's request themselves. */
export type CallHandler = (call: IncomingCall, env?: EnvSource) => Promise<Answer>;

/** Builds the endpoint for Web requests. Throws at once on functions of another app or duplicate IDs. */
export function createServeHandler(options: ServeOptions): ServeHandler {
  const endpoint = createCallHandler(options);
  return async (request, env) => toResponse(await endpoint(callFromRequest(request), env));
}

/** Builds the endpoint. Throws at once on functions of another app or duplicate IDs. */
export function createCallHandler(options: ServeOptions): CallHandler {
  const endpoint = new Endpoint(options);
  return (call, env) => endpoint.handle(call, env);
}

class Endpoint {
  private readonly client: Stepwise<any>;
  private readonly registry: FunctionRegistry;
  private devNoticeShown = false;
  private readonly seenSignatures = new SeenSignatures();
  private readonly notices: FailureNotices;
  private lastRegistrationAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: ServeOptions) {
    this.client = options.client;
    this.registry = new FunctionRegistry(options.client.id, options.functions);
    this.notices = new FailureNotices(this.client.log);
  }

  async handle(request: IncomingCall, env?: EnvSource): Promise<Answer> {
    try {
      const settings = this.client.settings(env);
      switch (request.method) {
        case "GET":
          return await this.describe(request, settings, env);
        case "PUT":
          return await this.register(request, settings, env);
        case "POST":
          return await this.invoke(request, settings, env);
        default:
          return json(405, { error: `Method ${request.method} not allowed: use GET, PUT or POST` }, { allow: "GET, PUT, POST" });
      }
    } catch (error) {
      // Something before serve() read the body: the operator's to fix, and the message says how.
      if (error instanceof RawBodyMissing) return json(500, { error: error.message });
      // A bug or a broken runtime, not a function error: still answer JSON the executor can read.
      this.client.log.error("Stepwise: serve() failed", error);
      return json(500, { error: `serve() failed: ${error instanceof Error ? error.message : String(error)}` });
    }
  }

  private async invoke(request: IncomingCall, settings: Settings, env?: EnvSource): Promise<Answer> {
    const keys = this.verificationKeys(settings);
    if (!keys) return json(500, { error: MISSING_SIGNING_KEY });
    // Refused before the body is read: no signature of the right shape, or more bytes than any invocation has.
    const signature = request.header(HEADERS.signature);
    const shape = signatureHeaderProblem(signature);
    if (shape) return json(401, { error: shape.message });
    const limit = this.options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    const body = await request.text(limit);
    if (body === null) {
      return json(413, { error: `Request body larger than ${limit} bytes: no invocation is this large (raise serve({ maxRequestBytes }) with the executor's limits)` });
    }
    const url = new URL(request.url);
    const verdict = await verify(signature, { method: "POST", targets: this.targets(url, settings), body }, keys);
    if (!verdict.ok) return json(401, { error: verdict.message });
    if (!this.seenSignatures.firstTime(signature!)) {
      return json(401, { error: "Replayed request: this app already received this signed invocation; the executor signs every attempt anew" });
    }
    const parsed = parseInvocation(body);
    if (!parsed.ok) return json(400, { error: parsed.error });
    const fnId = url.searchParams.get("fnId");
    if (!fnId) return json(400, { error: "Missing ?fnId=<function id> in the URL" });
    const fn = this.registry.get(fnId);
    if (!fn) {
      const known = this.registry.ids().join(", ") || "none";
      return json(404, { error: `No function "${fnId}" in app "${this.client.id}" (it serves: ${known})` });
    }
    // The signature binds ?fnId= and the body; the body must be a run of this app's function of that ID.
    if (parsed.request.run.appId !== this.client.id) {
      return json(400, { error: `The invocation is for app "${parsed.request.run.appId}" but reached app "${this.client.id}"` });
    }
    if (parsed.request.run.functionId !== fnId) {
      return json(400, { error: `The invocation is for function "${parsed.request.run.functionId}" but was sent to ?fnId=${fnId}` });
    }
    const signingKey = outgoingSigningKey(settings);
    const transport: ExecutorTransport | undefined = signingKey
      ? { fetch: this.client.fetch, post: this.client.hasOwnFetch ? undefined : nodePost, baseUrl: settings.baseUrl, signingKey, notices: this.notices }
      : undefined;
    let invocation = parsed.request;
    if (leftOutputsOut(invocation)) {
      try {
        invocation = await withStoredOutputs(invocation, transport);
      } catch (error) {
        if (!(error instanceof StoredOutputsUnavailable)) throw error;
        // Nothing of the function ran: the executor tries again later, not counting an attempt.
        this.notices.warn("stored outputs", `Stepwise: ${error.message}`);
        return json(503, { error: error.message, notStarted: true });
      }
    }
    const checkpointer = transport && checkpointerFor(invocation, budgetWithin(fn.checkpointBudgetMs, request.deadline), transport);
    const run = invocation.run;
    const result = await traceInvocation(request.header(TRACEPARENT_HEADER) ?? undefined, { functionId: fnId, runId: run.id, attempt: run.attempt }, (trace) =>
      execute(fn, invocation, { checkpointer, trace, transport, hostDeadline: request.deadline, env }),
    );
    return json(result.status, result.body);
  }

  /**
   * The app's description (its functions' triggers, retries, conditions) for a signed GET (the
   * executor's discovery signs it) or in dev mode; anyone else learns only what answers here.
   */
  private async describe(request: IncomingCall, settings: Settings, env?: EnvSource): Promise<Answer> {
    const description = this.registry.describe(this.configuredUrl(settings) ?? requestUrl(request), this.options, env);
    if (settings.dev) return json(200, description);
    const keys = this.verificationKeys(settings);
    const signature = request.header(HEADERS.signature);
    const signed = keys && signature && (await verify(signature, { method: "GET", targets: this.targets(new URL(request.url), settings), body: "" }, keys)).ok;
    if (signed) return json(200, description);
    return json(200, {
      appId: description.appId,
      sdk: description.sdk,
      functionCount: description.functions.length,
      message: "The functions are described to signed requests only (the executor signs its GET with the signing key)",
    });
  }

  private async register(request: IncomingCall, settings: Settings, env?: EnvSource): Promise<Answer> {
    const key = outgoingSigningKey(settings);
    if (!key) return json(500, { ok: false, error: MISSING_SIGNING_KEY });
    const url = this.configuredUrl(settings) ?? (settings.dev ? requestUrl(request) : undefined);
    if (!url) return json(500, { ok: false, error: MISSING_SERVE_URL });
    if (!settings.dev) {
      const waitMs = this.lastRegistrationAt + REGISTRATION_INTERVAL_MS - Date.now();
      if (waitMs > 0) {
        const seconds = Math.ceil(waitMs / 1000);
        return json(429, { ok: false, error: `Registered moments ago; try again in ${seconds}s` }, { "retry-after": String(seconds) });
      }
      this.lastRegistrationAt = Date.now();
    }
    const body = JSON.stringify(this.registry.describe(url, this.options, env));
    try {
      const answer = await postToExecutor({
        fetch: this.client.fetch,
        url: `${settings.baseUrl}/api/apps`,
        body,
        headers: { [HEADERS.signature]: await sign(key, { method: "POST", target: APPS_ROUTE, body }) },
      });
      const message = (answer as { message?: unknown }).message;
      const fallback = `Registered app "${this.client.id}" with ${settings.baseUrl}`;
      return json(200, { ok: true, message: typeof message === "string" ? message : fallback });
    } catch (error) {
      if (!(error instanceof StepwiseApiError)) throw error;
      return json(error.status >= 400 ? error.status : 502, { ok: false, error: error.message });
    }
  }

  /** Keys accepted on incoming requests; undefined when none is configured outside dev. */
  private verificationKeys(settings: Settings): string[] | undefined {
    if (settings.signingKeys.length > 0) return settings.signingKeys;
    if (!settings.dev) return undefined;
    if (!this.devNoticeShown) {
      this.devNoticeShown = true;
      this.client.log.info("Stepwise: dev mode, accepting requests signed with the public dev key");
    }
    return [DEV_SIGNING_KEY];
  }

  /**
   * The path and query an invocation may be signed for: this request's own, and the same
   * query on the configured public URL's path (where a proxy forwards under another path).
   */
  private targets(url: URL, settings: Settings): string[] {
    const own = requestTarget(url);
    const configured = this.configuredUrl(settings);
    if (!configured) return [own];
    const publicTarget = `${new URL(configured).pathname}${url.search}`;
    return publicTarget === own ? [own] : [own, publicTarget];
  }

  private configuredUrl(settings: Settings): string | undefined {
    return this.options.serveUrl ?? settings.serveUrl;
  }
}

/** The URL a request was addressed to, without its query: what the app is called on. */
function requestUrl(request: IncomingCall): string {
  const url = new URL(request.url);
  url.search = "";
  url.hash = "";
  return url.toString();
}

type ParsedInvocation = { ok: true; request: InvokeRequest } | { ok: false; error: string };

function parseInvocation(body: string): ParsedInvocation {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (error) {
    return { ok: false, error: `Body is not JSON: ${error instanceof Error ? error.message : String(error)}` };
  }
  const result = InvokeRequestSchema.safeParse(value);
  // The schema fills in every field the compact form of a step leaves out.
  if (result.success) return { ok: true, request: result.data as InvokeRequest };
  const problems = issuesText(result.error.issues, "body");
  return { ok: false, error: `Body is not a Stepwise invocation: ${problems}` };
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Answer {
  return { status, headers: { "content-type": "application/json", [HEADERS.sdk]: SDK_VERSION, ...headers }, body: JSON.stringify(body) };
}
