/**
 * `serve()` for Fastify 4 and 5, as a plugin: `app.register(serve({ client, functions }))`
 * serves `/api/durable` (or `path`; a `prefix` given to `register` comes before it).
 *
 * The signature covers the exact body bytes, and Fastify parses JSON by default: inside this
 * plugin's own scope every body is kept as the text received (the app's other routes keep their
 * parsers), with the SDK's own size limit rather than Fastify's 1 MiB default.
 */
import { forwardedProtocol, headerIn, utf8LongerThan, type IncomingCall } from "../call.ts";
import { createCallHandler, DEFAULT_MAX_REQUEST_BYTES, type ServeOptions } from "../serve.ts";

export type { ServeOptions } from "../serve.ts";

/** The part of a Fastify request that `serve()` reads. */
export interface FastifyRequestLike {
  method: string;
  /** The path and query the client called, prefixes included. */
  url: string;
  protocol: string;
  headers: Record<string, string | string[] | undefined>;
  body?: unknown;
  /** Fastify 5 (`host`), 4 (`hostname`, with the port). */
  host?: string;
  hostname: string;
}

/** The part of a Fastify reply that `serve()` uses. */
export interface FastifyReplyLike {
  code(status: number): FastifyReplyLike;
  headers(values: Record<string, string>): FastifyReplyLike;
  send(body: Buffer): unknown;
}

/** The part of a Fastify instance that the plugin uses. */
export interface FastifyInstanceLike {
  removeAllContentTypeParsers(): unknown;
  addContentTypeParser(
    type: string,
    options: { parseAs: "string"; bodyLimit?: number },
    parser: (request: unknown, body: string, done: (error: Error | null, body?: unknown) => void) => void,
  ): unknown;
  route(options: {
    method: Array<"GET" | "POST" | "PUT">;
    url: string;
    bodyLimit?: number;
    handler: (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<unknown>;
  }): unknown;
}

/** Options of the plugin: where it serves, relative to the prefix it is registered under. */
export interface FastifyServeOptions extends ServeOptions {
  /** The route's path; `/api/durable` by default. */
  path?: string;
}

/** Returns a Fastify plugin serving `/api/durable`. */
export function serve(options: FastifyServeOptions): (fastify: FastifyInstanceLike) => Promise<void> {
  const handler = createCallHandler(options);
  const limit = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  return async (fastify) => {
    // This plugin's scope only (not wrapped in fastify-plugin): the app's routes keep their parsers.
    fastify.removeAllContentTypeParsers();
    fastify.addContentTypeParser("*", { parseAs: "string", bodyLimit: limit }, (_request, body, done) => done(null, body));
    fastify.route({
      method: ["GET", "POST", "PUT"],
      url: options.path ?? "/api/durable",
      bodyLimit: limit,
      handler: async (request, reply) => {
        const answer = await handler(callFromFastify(request));
        // Bytes, not a string: Fastify would add a charset to the content type of a string. A
        // Buffer, not any Uint8Array: Fastify before 4.18 serializes the others as JSON.
        return reply.code(answer.status).headers(answer.headers).send(Buffer.from(answer.body, "utf8"));
      },
    });
  };
}

function callFromFastify(request: FastifyRequestLike): IncomingCall {
  // As the Node adapter reads it (Fastify itself reads X-Forwarded-Proto only with trustProxy).
  const protocol = forwardedProtocol(headerIn(request.headers, "x-forwarded-proto")) ?? request.protocol;
  const body = typeof request.body === "string" ? request.body : "";
  return {
    method: request.method,
    url: new URL(request.url, `${protocol}://${request.host ?? request.hostname}`).href,
    header: (name) => headerIn(request.headers, name),
    text: async (maxBytes) => (utf8LongerThan(body, maxBytes) ? null : body),
  };
}
