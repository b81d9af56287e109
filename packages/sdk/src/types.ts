/**
 * Event types derived from the client's zod schemas. Any string is a valid event name; a name
 * that has a schema gets its data typed (`z.output` in handlers, `z.input` when sending), the
 * others carry `data: unknown`.
 */
import type { z } from "zod";

/** Event name → zod schema of its `data`. */
export type EventSchemas = Record<string, z.ZodType>;

/** An event name: the schema keys (offered by autocompletion), or any other string. */
export type EventName<S extends EventSchemas> = (keyof S & string) | (string & {});

/** The `data` a handler receives for event `N`. */
export type EventData<S extends EventSchemas, N extends string> = N extends keyof S ? z.output<S[N]> : unknown;

/** An event as handed to a function, for each name in `N` (a union gives a union of events). */
export type TypedEvent<S extends EventSchemas, N extends string> = N extends string
  ? { id: string; name: N; data: EventData<S, N>; ts: number }
  : never;

/** An event to send, for each name in `N`: `data` is required when the name has a schema. */
export type SendEventPayload<S extends EventSchemas, N extends string> = N extends string
  ? { name: N; id?: string; ts?: number } & (N extends keyof S ? { data: z.input<S[N]> } : { data?: unknown })
  : never;

/** The answer to sending events: the IDs the executor stored them under, in order. */
export interface SendResult {
  ids: string[];
}

/** Logs one line per call, prefixed with the run ID. */
export interface Logger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}
