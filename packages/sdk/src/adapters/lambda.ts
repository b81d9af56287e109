/**
 * `serve()` for AWS Lambda behind API Gateway (REST API, payload v1; HTTP API, payload v2) or a
 * Lambda Function URL (v2 shape): `export const handler = serve({ client, functions })`.
 *
 * Reads the event as the core's call (no Web `Request` in between: the body is already a
 * string in the event). Web APIs only (atob, TextEncoder), so it bundles for any runtime.
 * Settings come from `process.env`, per request.
 */
import { utf8LongerThan, type IncomingCall } from "../call.ts";
import { createCallHandler, type ServeOptions } from "../serve.ts";

export type { ServeOptions } from "../serve.ts";

/** Header and query maps as API Gateway sends them; absent maps may be `null`. */
type StringMap = Record<string, string | undefined> | null | undefined;
type MultiMap = Record<string, string[] | undefined> | null | undefined;

/** The fields of an API Gateway REST API event (payload format 1.0) that `serve()` reads. */
export interface ApiGatewayV1Event {
  httpMethod: string;
  /** The resource path, without the stage. */
  path: string;
  headers?: StringMap;
  multiValueHeaders?: MultiMap;
  queryStringParameters?: StringMap;
  multiValueQueryStringParameters?: MultiMap;
  body?: string | null;
  isBase64Encoded?: boolean;
  /** `path` here is the path the client called, stage or base path included. */
  requestContext?: { domainName?: string; path?: string };
}

/** The fields of an HTTP API (payload format 2.0) or Function URL event that `serve()` reads. */
export interface ApiGatewayV2Event {
  version: "2.0";
  rawPath: string;
  rawQueryString?: string;
  headers?: StringMap;
  /** HTTP API and Function URLs move `Cookie` headers here. */
  cookies?: string[];
  body?: string;
  isBase64Encoded?: boolean;
  requestContext: { domainName?: string; http: { method: string } };
}

/** Any event `serve()` accepts. */
export type LambdaHttpEvent = ApiGatewayV1Event | ApiGatewayV2Event;

/** The proxy result; API Gateway v1 merges `multiValueHeaders` with `headers`. */
export interface LambdaHttpResult {
  statusCode: number;
  headers: Record<string, string>;
  multiValueHeaders?: Record<string, string[]>;
  body: string;
  isBase64Encoded: false;
}

/** The part of Lambda's context `serve()` reads: how long the invocation may still run. */
export interface LambdaContext {
  getRemainingTimeInMillis?(): number;
}

/**
 * A Lambda handler for `/api/durable`. With Lambda's `context`, checkpointed steps start only in
 * the first half of the time the function has left (its timeout is 3 s unless configured), so
 * the invocation answers before Lambda ends it.
 */
export type LambdaHandler = (event: LambdaHttpEvent, context?: LambdaContext) => Promise<LambdaHttpResult>;

/** Returns the Lambda handler for `/api/durable`. */
export function serve(options: ServeOptions): LambdaHandler {
  const handler = createCallHandler(options);
  return async (event, context) => {
    const remaining = typeof context?.getRemainingTimeInMillis === "function" ? context.getRemainingTimeInMillis() : undefined;
    const answer = await handler(toCall(event, remaining === undefined ? undefined : Date.now() + remaining));
    const headers = answer.headers;
    const result: LambdaHttpResult = { statusCode: answer.status, headers, body: answer.body, isBase64Encoded: false };
    // A REST API (v1) only passes on multi-value headers when asked; it is harmless to send both.
    if (!isV2(event)) result.multiValueHeaders = Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, [value]]));
    return result;
  };
}

/** Translates an event into a Web `Request`. Exported for tests and custom wrappers. */
export function toRequest(event: LambdaHttpEvent): Request {
  const { method, url, headers, body } = readEvent(event);
  return new Request(url, { method, headers, body });
}

/** The event as the core's call; `deadline` is when Lambda ends the invocation, if known. */
function toCall(event: LambdaHttpEvent, deadline?: number): IncomingCall {
  const { method, url, headers, body } = readEvent(event);
  return {
    method,
    url,
    deadline,
    header: (name) => headers.get(name),
    text: async (maxBytes) => {
      if (Number(headers.get("content-length") ?? Number.NaN) > maxBytes) return null;
      if (typeof body === "string") return utf8LongerThan(body, maxBytes) ? null : body;
      if (!body) return "";
      return body.byteLength > maxBytes ? null : decoder.decode(body);
    },
  };
}

const decoder = new TextDecoder();

/** What a request is made of, read once from either payload format. */
function readEvent(event: LambdaHttpEvent): { method: string; url: string; headers: Headers; body: Uint8Array<ArrayBuffer> | string | undefined } {
  const v2 = isV2(event);
  const headers = v2 ? v2Headers(event) : v1Headers(event);
  const method = v2 ? event.requestContext.http.method : event.httpMethod;
  // The executor calls back the URL the app describes, so it must be the public one: stage included.
  const path = v2 ? event.rawPath : (event.requestContext?.path ?? event.path);
  const query = v2 ? (event.rawQueryString ?? "") : v1Query(event);
  const host = headers.get("host") ?? event.requestContext?.domainName ?? "localhost";
  // API Gateway and Function URLs are HTTPS-only; x-forwarded-proto says so when present.
  const protocol = headers.get("x-forwarded-proto")?.split(",")[0]?.trim() ?? "https";
  const url = new URL(`${protocol}://${host}${path}${query ? `?${query}` : ""}`).href;
  const hasBody = method !== "GET" && method !== "HEAD" && event.body != null;
  return { method, url, headers, body: hasBody ? bodyBytes(event.body!, event.isBase64Encoded === true) : undefined };
}

function isV2(event: LambdaHttpEvent): event is ApiGatewayV2Event {
  return (event as ApiGatewayV2Event).version === "2.0";
}

function v1Headers(event: ApiGatewayV1Event): Headers {
  const headers = new Headers();
  // multiValueHeaders holds every value of a repeated header; headers only the last one.
  for (const [name, values] of Object.entries(event.multiValueHeaders ?? {})) for (const value of values ?? []) headers.append(name, value);
  for (const [name, value] of Object.entries(event.headers ?? {})) if (value !== undefined && !headers.has(name)) headers.set(name, value);
  return headers;
}

function v2Headers(event: ApiGatewayV2Event): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(event.headers ?? {})) if (value !== undefined) headers.set(name, value);
  if (event.cookies?.length) headers.set("cookie", event.cookies.join("; "));
  return headers;
}

/** v1 hands the query over decoded; re-encode it. */
function v1Query(event: ApiGatewayV1Event): string {
  const params = new URLSearchParams();
  for (const [name, values] of Object.entries(event.multiValueQueryStringParameters ?? {})) for (const value of values ?? []) params.append(name, value);
  for (const [name, value] of Object.entries(event.queryStringParameters ?? {})) if (value !== undefined && !params.has(name)) params.set(name, value);
  return params.toString();
}

/**
 * The body's exact bytes. API Gateway base64-encodes bodies it treats as binary; decoding them
 * to bytes (not a JS string) keeps the signed bytes intact, multi-byte UTF-8 included.
 */
function bodyBytes(body: string, base64: boolean): Uint8Array<ArrayBuffer> | string {
  if (!base64) return body;
  const binary = atob(body);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
