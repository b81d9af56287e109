/**
 * Results cross the wire as JSON and come back from storage on replay, so a step's result is
 * what `JSON.parse(JSON.stringify(value))` gives: Dates become strings, `undefined` becomes
 * `null` (or disappears inside objects), functions and symbols vanish. {@link Jsonify} says the
 * same in types, and {@link toJson} does it at run time.
 */

import { NonRetriableError } from "./errors.ts";

type JsonPrimitive = string | number | boolean | null;
type Dropped = undefined | symbol | ((...args: never[]) => unknown);

/** The type a value of type `T` has after a JSON round trip. */
export type Jsonify<T> = 0 extends 1 & T ? any : unknown extends T ? unknown : JsonifyValue<T>;

type JsonifyValue<T> = T extends JsonPrimitive
  ? T
  : T extends undefined | void
    ? null
    : T extends { toJSON(): infer J }
      ? Jsonify<J>
      : T extends symbol | bigint | ((...args: never[]) => unknown)
        ? never
        : T extends ReadonlyMap<unknown, unknown> | ReadonlySet<unknown>
          ? Record<string, never>
          : T extends readonly unknown[]
            ? { -readonly [K in keyof T]: T[K] extends Dropped ? null : JsonifyValue<T[K]> }
            : T extends object
              ? JsonifyObject<T>
              : never;

/** Keys JSON keeps: not symbols, and not functions or undefined-only values. */
type KeptKey<T, K extends keyof T> = K extends symbol ? never : T[K] extends Dropped ? never : K;
/** Keys that may hold `undefined`: JSON drops them then, so they become optional. */
type MaybeUndefinedKeys<T> = { [K in keyof T]-?: undefined extends T[K] ? K : never }[keyof T];

type JsonifyObject<T> = Flatten<
  { [K in keyof T as K extends MaybeUndefinedKeys<T> ? never : KeptKey<T, K>]: JsonifyValue<T[K]> } & {
    [K in keyof T as K extends MaybeUndefinedKeys<T> ? KeptKey<T, K> : never]?: JsonifyValue<Exclude<T[K], undefined>>;
  }
>;
type Flatten<T> = { [K in keyof T]: T[K] };

/** Thrown when a result cannot be stored as JSON (a BigInt, a cycle...); a retry would not help. */
export class NotJsonError extends NonRetriableError {
  override name = "NotJsonError";
}

/**
 * The JSON value of `value` (a round trip), `null` for `undefined`. Done here rather than at
 * response time so a bad result fails the one step that produced it, with a clear message.
 */
export function toJson(value: unknown, what: string): unknown {
  if (value === undefined) return null;
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new NotJsonError(`${what} is not JSON-serializable: ${reason}`);
  }
  return text === undefined ? null : (JSON.parse(text) as unknown);
}
