/**
 * The few Workers runtime types this app uses, declared here rather than through
 * @cloudflare/workers-types, whose globals clash with the DOM and Node types the rest of the
 * repository compiles against. Shapes as documented for Workers and Durable Objects.
 */

/** The third argument of `fetch` and `scheduled`: work may go on after the response. */
export interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
}

/** What a cron trigger hands to `scheduled()`. */
export interface ScheduledController {
  cron: string;
  scheduledTime: number;
}

/** A Durable Object's storage, as far as alarms go (one alarm per object). */
export interface DurableObjectStorage {
  getAlarm(): Promise<number | null>;
  setAlarm(scheduledTime: number | Date): Promise<void>;
  deleteAlarm(): Promise<void>;
}

export interface DurableObjectState {
  storage: DurableObjectStorage;
  waitUntil(promise: Promise<unknown>): void;
}

export interface DurableObjectStub {
  fetch(input: string, init?: RequestInit): Promise<Response>;
}

export interface DurableObjectNamespace {
  idFromName(name: string): unknown;
  get(id: unknown): DurableObjectStub;
}
