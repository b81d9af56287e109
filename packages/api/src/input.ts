/**
 * Reading what a request to the API carries, refusing what cannot be stored before anything
 * is: IDs in the path, bearer keys, bodies that are not UTF-8 or not JSON, numbers JSON cannot
 * hold. Each refusal is an {@link InputError} (a 400 that says what is wrong).
 */
import { InputError } from "@stepwise/engine";
import { MAX_EVENT_ID_LENGTH, textProblem } from "@stepwise/protocol";
import type { Context } from "hono";

/** IDs in the path are text a store can hold, or the request is refused before any query. */
export async function pathIds(c: Context, next: () => Promise<void>): Promise<Response | void> {
  for (const [name, value] of Object.entries(c.req.param() as Record<string, string>)) {
    const problem = textProblem(value) ?? (value.length > MAX_EVENT_ID_LENGTH ? `is longer than ${MAX_EVENT_ID_LENGTH} characters` : null);
    if (problem) return c.json({ error: `Invalid ${name} in the path: it ${problem}` }, 400);
  }
  return next();
}

export function bearer(c: Context): string | undefined {
  const header = c.req.header("authorization");
  return header?.startsWith("Bearer ") ? header.slice(7).trim() : undefined;
}

export async function jsonBody(c: Context): Promise<unknown> {
  return parseJson(await utf8Body(c));
}

/**
 * A callback's body as its run gets it: parsed when it was sent as JSON (`application/json` or a
 * `+json` type, whatever its parameters), else its text, as a third party sent it.
 */
export async function callbackBody(c: Context): Promise<unknown> {
  const text = await utf8Body(c);
  const type = c.req.header("content-type")?.split(";")[0]?.trim().toLowerCase() ?? "";
  return (type === "application/json" || type.endsWith("+json")) && text.trim() !== "" ? parseJson(text) : text;
}

/** The body as text; bytes that are not UTF-8 are refused, not replaced with U+FFFD in silence. */
export async function utf8Body(c: Context): Promise<string> {
  return decodeUtf8(await c.req.arrayBuffer());
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

export function decodeUtf8(bytes: ArrayBuffer | Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    throw new InputError("Body is not valid UTF-8; send JSON encoded as UTF-8");
  }
}

export function parseJson(text: string): unknown {
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
