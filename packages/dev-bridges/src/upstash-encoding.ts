/**
 * Request parsing and response encoding for the Upstash REST protocol, kept apart from the HTTP
 * and Redis plumbing so the wire rules live in one place:
 *   - a command is a JSON array `[name, ...args]` of strings and numbers (booleans tolerated);
 *   - a result is `{ result }` or `{ error }`; bulk and status strings become JSON strings,
 *     integers JSON numbers, nil `null`, arrays nest;
 *   - with `Upstash-Encoding: base64` every string is base64 of its raw bytes, except a top-level
 *     "OK" status, which Upstash (and @upstash/redis's decoder) leave as plain "OK".
 */

/** What ioredis's `callBuffer` resolves to (Lua scripts can nest error replies inside arrays). */
export type RedisReply = Buffer | string | number | bigint | null | Error | RedisReply[];

/** A JSON value as written to the response body. */
export type JsonReply = string | number | null | JsonReply[];

/** One entry of a `/pipeline` or `/multi-exec` response, and the body of `POST /`. */
export type UpstashEntry = { result: JsonReply } | { error: string };

/** A command argument as handed to ioredis: strings go out as UTF-8, Buffers verbatim. */
export type RedisArg = string | Buffer;

/** A request the bridge refuses before it reaches Redis; surfaces as `{ error }` with HTTP 400. */
export class BridgeRequestError extends Error {
  override name = "BridgeRequestError";
}

/**
 * Validates one JSON command and converts its arguments for Redis. Numbers become their decimal
 * text (that is what Redis receives from Upstash too); objects and null are refused instead of
 * being sent as "[object Object]".
 */
export function parseCommand(raw: unknown): [name: string, args: RedisArg[]] {
  if (!Array.isArray(raw) || raw.length === 0) {
    throw new BridgeRequestError("ERR a command must be a non-empty JSON array like [\"GET\",\"key\"]");
  }
  const parts = raw.map((value, i) => {
    if (typeof value === "string") return value;
    if (typeof value === "number" && Number.isFinite(value)) return String(value);
    if (typeof value === "boolean") return String(value);
    throw new BridgeRequestError(
      `ERR command argument ${i} must be a string or a number, got ${value === null ? "null" : typeof value}`,
    );
  });
  const [name, ...args] = parts as [string, ...string[]];
  if (name.trim() === "") throw new BridgeRequestError("ERR empty command name");
  return [name, args];
}

/** Validates a `/pipeline` or `/multi-exec` body: a non-empty array of commands. */
export function parseCommandList(raw: unknown): Array<[string, RedisArg[]]> {
  if (!Array.isArray(raw) || raw.length === 0) {
    throw new BridgeRequestError("ERR expected a non-empty JSON array of commands like [[\"SET\",\"k\",\"v\"]]");
  }
  return raw.map((cmd) => parseCommand(cmd));
}

/** Parses a JSON request body, turning a syntax error into a 400 rather than a 500. */
export function parseJsonBody(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    throw new BridgeRequestError("ERR request body is not valid JSON");
  }
}

function encodeString(bytes: Buffer, base64: boolean): string {
  // Without base64 the bytes are decoded as UTF-8; invalid sequences become U+FFFD, as Upstash
  // documents. Clients that need exact bytes ask for base64.
  return base64 ? bytes.toString("base64") : bytes.toString("utf8");
}

function encodeNested(value: RedisReply, base64: boolean): JsonReply {
  if (value === null || value === undefined) return null;
  if (typeof value === "number") return value;
  // ioredis only yields bigint with custom options; JSON has no bigint, and a JS client would
  // lose the precision anyway.
  if (typeof value === "bigint") return Number(value);
  if (Buffer.isBuffer(value)) return encodeString(value, base64);
  if (typeof value === "string") return encodeString(Buffer.from(value, "utf8"), base64);
  if (value instanceof Error) return encodeString(Buffer.from(value.message, "utf8"), base64);
  return value.map((v) => encodeNested(v, base64));
}

/** Encodes one Redis reply as the `result` of a response entry. */
export function encodeResult(value: RedisReply, base64: boolean): JsonReply {
  // @upstash/redis's decoder keeps a top-level "OK" as is (base64-decoding "OK" would yield
  // garbage), and Upstash sends it unencoded; nested strings are always encoded.
  if (base64 && isOk(value)) return "OK";
  return encodeNested(value, base64);
}

function isOk(value: RedisReply): boolean {
  if (typeof value === "string") return value === "OK";
  return Buffer.isBuffer(value) && value.length === 2 && value[0] === 0x4f && value[1] === 0x4b;
}

/** Builds a response entry from a settled command. */
export function toEntry(outcome: Settled, base64: boolean): UpstashEntry {
  return outcome.ok ? { result: encodeResult(outcome.value, base64) } : { error: outcome.error.message };
}

/** The outcome of one command: a reply, or the error Redis (or the bridge) answered with. */
export type Settled = { ok: true; value: RedisReply } | { ok: false; error: Error };
