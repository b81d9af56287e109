/**
 * The network between an executor and the app, with faults: the executor's `fetch` goes
 * through here to the app's real `serve()` handler, in process (and a `step.fetch` to the
 * simulation's target, `target.ts`). Which invocation meets which
 * fault is decided by a hash of the schedule's seed, the run's key and how many invocations of
 * that run came before, so a replay meets the same faults even when timing differs.
 */
import { StoredStepSchema, type InvokeRequestWire } from "@stepwise/protocol";
import { invocationContext, readContext, type Delivery, type Ledger } from "./ledger.ts";
import { callTarget, SIM_TARGET } from "./target.ts";

export type NetworkFault = "refuse" | "502 before" | "502 after" | "timeout" | "truncate" | "garbage" | "duplicate ops" | "slow" | "older instance";
/** Drawn for any invocation; "older instance" is drawn on its own, for those it can refuse. */
export const NETWORK_FAULTS: NetworkFault[] = ["refuse", "502 before", "502 after", "timeout", "truncate", "garbage", "duplicate ops", "slow"];

/** A number in [0, 1) from a string: FNV-1a, then a finalizer. */
export function unit(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return (h >>> 0) / 2 ** 32;
}

export interface NetworkOptions {
  seed: number;
  ledger: Ledger;
  app: (request: Request) => Promise<Response>;
  /** Chance that an invocation meets a fault, while faults are on. */
  rate: () => number;
  /** Whether this executor's process is gone (crashed, or stopped): it sends nothing any more. */
  gone: () => boolean;
  /** How a deleted deployment at this URL answers (versioned deploys), or null while it is live. */
  deleted?: (url: string) => "404" | "refuse" | null;
}

export const badGateway = () => new Response("<html><body><h1>502 Bad Gateway</h1><p>upstream</p></body></html>", { status: 502, headers: { "content-type": "text/html" } });

/** The `fetch` one executor uses to reach the app. */
export function faultyFetch(executor: string, options: NetworkOptions): typeof fetch {
  const { ledger, app, seed } = options;
  const perRun = new Map<string, number>();
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input instanceof Request ? input.url : input);
    const body = typeof init?.body === "string" ? init.body : "";
    // A process that died sends nothing; the simulation's dead executor objects still run code.
    if (options.gone()) throw new TypeError("fetch failed", { cause: new Error(`executor ${executor} is gone`) });
    // A deleted deployment: nothing there runs anything.
    const deleted = options.deleted?.(url);
    if (deleted === "404") return new Response("The deployment could not be found", { status: 404 });
    if (deleted === "refuse") throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED 10.0.0.1:443"), { code: "ECONNREFUSED" }) });
    // A step.fetch the executor makes itself.
    if (url.startsWith(SIM_TARGET)) return callTarget(ledger, executor, url, init?.signal);
    if (init?.method !== "POST" || !body) return app(new Request(url, init));
    const request = JSON.parse(body) as InvokeRequestWire;
    const data = request.event.data as { key?: string; qid?: string; runId?: string };
    const key = data.key ?? data.qid ?? data.runId ?? request.event.id;
    const nth = (perRun.get(request.run.id) ?? 0) + 1;
    perRun.set(request.run.id, nth);
    const roll = unit(`${seed}|${key}|${request.run.functionId}|${nth}|${request.targetStep ?? ""}`);
    let fault: NetworkFault | "none" =
      roll < options.rate() ? NETWORK_FAULTS[Math.floor(unit(`${seed}|kind|${key}|${nth}`) * NETWORK_FAULTS.length)]! : "none";
    // An instance older than the app's registration (a rolling deploy) reads every invocation but
    // one whose stored steps are in the compact form: its SDK requires every field. Drawn on its
    // own, among those alone: few invocations carry compact steps, and each executor sends a URL
    // that refused every field for a while after.
    const compact = request.steps.some((step) => !StoredStepSchema.safeParse(step).success);
    if (fault === "none" && compact && unit(`${seed}|older|${key}|${nth}`) < options.rate()) fault = "older instance";
    const delivery = (d: Delivery) => d;
    const invocation = ledger.invocation({
      executor,
      runId: request.run.id,
      host: new URL(url).host,
      targetStep: request.targetStep,
      sentAt: Date.now(),
      fault,
      delivery: fault === "refuse" || fault === "502 before" || fault === "older instance" ? delivery("not-sent") : ["502 after", "timeout", "truncate", "garbage"].includes(fault) ? "lost" : "delivered",
      readAt: readContext.getStore()?.at,
      checkpointToken: request.checkpoint?.token,
    });
    try {
      if (fault === "refuse") throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:3000"), { code: "ECONNREFUSED" }) });
      if (fault === "502 before") return badGateway();
      if (fault === "older instance") return Response.json({ error: "Body is not a Stepwise invocation: steps.0.name: Invalid input: expected string, received undefined" }, { status: 400 });
      // An app that died mid-invocation never answers: the executor's own timeout ends the wait.
      // So does an app held up too long (its checkpoint stuck on a stalled executor): its answer
      // is lost to this executor as surely as one cut off on the way.
      let response: Response;
      try {
        response = await untilAborted(
          invocationContext.run(invocation.id, () => app(new Request(url, { ...init, signal: undefined }))),
          init?.signal ?? undefined,
        );
      } catch (error) {
        if (invocation.delivery === "delivered") {
          invocation.delivery = "lost";
          invocation.fault = "answer later than the executor's timeout";
          ledger.fault(invocation.fault);
        }
        throw error;
      }
      const text = await response.text();
      invocation.answeredAt = Date.now();
      noteWaits(invocation, text);
      // A slow way back: the app has answered (and reached its next step) well before the executor hears of it.
      if (fault === "slow") await new Promise((resolve) => setTimeout(resolve, 50 + Math.floor(unit(`${seed}|slow|${key}|${nth}`) * 250)));
      // Where the promise is weakest: an answer that opens a wait, held back while a reply may overtake it.
      if (fault === "none" && options.rate() > 0 && invocation.waits.length > 0 && unit(`${seed}|wait|${key}|${nth}`) < 0.5) {
        ledger.fault("wait answer held back");
        await new Promise((resolve) => setTimeout(resolve, 100 + Math.floor(unit(`${seed}|hold|${key}|${nth}`) * 300)));
      }
      switch (fault) {
        case "502 after":
          return badGateway();
        case "timeout":
          // The answer never comes: the executor's own timeout ends the wait.
          return await new Promise<Response>((_, reject) => {
            const signal = init?.signal;
            if (signal?.aborted) reject(signal.reason);
            signal?.addEventListener("abort", () => reject(signal.reason));
          });
        case "truncate":
          return new Response(text.slice(0, Math.floor(text.length / 2)), { status: response.status, headers: response.headers });
        case "garbage":
          return new Response("{\"type\": \"ops\", \"ops\": [", { status: 206, headers: { "content-type": "application/json" } });
        case "duplicate ops": {
          const answer = JSON.parse(text) as { type: string; ops?: unknown[] };
          if (answer.type === "ops" && answer.ops) answer.ops = [...answer.ops, ...answer.ops];
          return new Response(JSON.stringify(answer), { status: response.status, headers: response.headers });
        }
        default:
          return new Response(text, { status: response.status, headers: response.headers });
      }
    } finally {
      // However it ended (answered, refused, timed out): the executor's call is over.
      invocation.endedAt = Date.now();
    }
  }) as typeof fetch;
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    promise.then(resolve, reject);
  });
}

/** Remembers the waits an answer reported (a wait that later times out is checked against this time). */
function noteWaits(invocation: { waits: string[] }, text: string): void {
  try {
    const answer = JSON.parse(text) as { type?: string; ops?: Array<{ op: string; id: string }> };
    for (const op of answer.ops ?? []) if (op.op === "wait" || op.op === "wait-signal") invocation.waits.push(op.id);
  } catch {
    // Not JSON: nothing to note.
  }
}
