/**
 * Names and IDs (of steps, events, functions) are stored as text columns and compared as keys,
 * so they must be text every store can hold: no NUL character (Postgres text cannot contain
 * one) and well-formed UTF-16 (no lone surrogate, which has no UTF-8 encoding). JSON values
 * (outputs, event data) have no such rule: they are stored as JSON text, where both appear as
 * `\u` escapes and round-trip exactly.
 */
import { z } from "zod";

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Why `value` cannot be stored as a name or ID, or null when it can. */
export function textProblem(value: string): string | null {
  if (value.includes("\u0000")) return "contains a NUL character (\\u0000)";
  if (LONE_SURROGATE.test(value)) return "contains a lone UTF-16 surrogate (not valid Unicode)";
  return null;
}

/** A string that is storable as a name or ID (see the module comment). */
export function storableText(what: string, example = ""): z.ZodString {
  return z.string({ error: `${what} must be a string${example}` }).superRefine((value, ctx) => {
    const problem = textProblem(value);
    if (problem) ctx.addIssue({ code: "custom", message: `${what} ${problem}` });
  });
}

/** The first string (key or value) inside a JSON value that is not storable text, with its path. */
export function findTextProblem(value: unknown, path = "(root)"): string | null {
  if (typeof value === "string") {
    const problem = textProblem(value);
    return problem ? `${path} ${problem}` : null;
  }
  if (typeof value !== "object" || value === null) return null;
  for (const [key, child] of Object.entries(value)) {
    const keyProblem = textProblem(key);
    if (keyProblem) return `a key at ${path} ${keyProblem}`;
    const found = findTextProblem(child, `${path}.${key}`);
    if (found) return found;
  }
  return null;
}
