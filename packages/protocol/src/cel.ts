/**
 * CEL expressions in a function's configuration (`if` of a trigger or a `cancelOn`, an
 * `idempotency` key) are checked where the function is defined and again at sync, with the same
 * parser the executor evaluates them with (@marcbachmann/cel-js), so a typo is an error with its
 * position at startup, not a trigger that silently never fires.
 */
import { parse } from "@marcbachmann/cel-js";

/** What is wrong with a CEL expression's syntax, or undefined when it parses. */
export function celProblem(source: string): string | undefined {
  try {
    parse(source);
    return undefined;
  } catch (error) {
    const reason = (error instanceof Error ? error.message : String(error)).split("\n")[0];
    return `"${source}" is not a valid CEL expression (${reason})`;
  }
}
