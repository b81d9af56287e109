/**
 * Matching events: dotted-path equality (`match: "data.orderId"`) and CEL expressions (`if`).
 *
 * CEL (Common Expression Language, via @marcbachmann/cel-js) is safe to run on the executor:
 * no loops, no side effects, no access beyond the variables we pass (`event`, `async`).
 */
import { parse } from "@marcbachmann/cel-js";

type Compiled = ReturnType<typeof parse>;
const compiled = new Map<string, Compiled>();

/** Parses once and caches; throws a `SyntaxError`-like error with the position on bad syntax. */
export function compileExpression(source: string): Compiled {
  let program = compiled.get(source);
  if (!program) {
    program = parse(source);
    if (compiled.size > 10_000) compiled.clear();
    compiled.set(source, program);
  }
  return program;
}

/** Checks an expression's syntax; returns the error message, or null when it parses. */
export function expressionError(source: string): string | null {
  try {
    compileExpression(source);
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/**
 * Evaluates a boolean CEL expression. A missing field or a type error counts as "no match"
 * rather than an error: an event that lacks the field simply does not match.
 */
export function evaluateCondition(source: string, variables: Record<string, unknown>): boolean {
  try {
    return compileExpression(source)(variables) === true;
  } catch {
    return false;
  }
}

/** Evaluates a CEL expression to its value; undefined when a field is missing or the types do not fit. */
export function evaluateValue(source: string, variables: Record<string, unknown>): unknown {
  try {
    return compileExpression(source)(variables);
  } catch {
    return undefined;
  }
}

/** Reads `data.order.id` from an object; undefined when any part is missing. */
export function valueAtPath(value: unknown, path: string): unknown {
  let current = value;
  for (const key of path.split(".")) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

/** Structural equality of JSON values (key order does not matter). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const aKeys = Object.keys(a);
  const bKeys = Object.keys(b);
  if (aKeys.length !== bKeys.length) return false;
  return aKeys.every((key) => jsonEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]));
}

/** Whether `candidate` satisfies a matcher opened by a run triggered by `trigger`. */
export function matches(
  matcher: { matchPath?: string; matchValue?: unknown; ifExpr?: string },
  trigger: unknown,
  candidate: unknown,
): boolean {
  if (matcher.matchPath !== undefined) {
    const value = valueAtPath(candidate, matcher.matchPath);
    if (value === undefined || !jsonEqual(value, matcher.matchValue)) return false;
  }
  if (matcher.ifExpr !== undefined && !evaluateCondition(matcher.ifExpr, { event: trigger, async: candidate })) return false;
  return true;
}
