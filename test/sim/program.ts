/**
 * The simulation's workload: each run executes a small program, carried in its triggering
 * event, so one interpreter function covers every shape (sequential and parallel steps, sleeps,
 * waits answered by another function or by nobody, sends, invokes, cancels, failures, values
 * no store holds as they are). Programs and whole schedules are drawn by fast-check from a seed.
 */
import fc from "fast-check";

/** Values a step may return: the ones that break stores and serializers are over-represented. */
export type ValueKind = "int" | "nul" | "surrogate" | "keys" | "deep" | "big" | "null";

export interface RunItem {
  t: "run";
  /** From a small pool, so repeated names get counters (`work`, `work:1`, …). */
  name: string;
  /** Executions that throw (retriable) before one returns. */
  fail: number;
  /** Throws a NonRetriableError instead: the step fails for good at once. */
  nonRetriable: boolean;
  /** Whether the function catches the step's final failure (or the run fails). */
  catch: boolean;
  value: ValueKind;
  /** The step's own retries (`step.run({ id, retries })`), over the function's. */
  retries?: number;
}

export type Item =
  | RunItem
  | { t: "parallel"; branches: RunItem[] }
  | { t: "sleep"; ms: number }
  /** sendEvent a question, then waitForEvent its answer, which another function sends. */
  | { t: "ask"; timeoutMs: number; replyDelayMs: number }
  /** waitForEvent a ping; the simulation sends one after `pingAfterMs` (or never). */
  | { t: "wait"; timeoutMs: number; pingAfterMs?: number }
  | { t: "send"; count: number }
  | { t: "invoke"; program: Item[] }
  /** The body throws outside any step on its first `times` attempts. */
  | { t: "bodyError"; times: number }
  /** The run sends its own cancelOn event beside a sleep. */
  | { t: "selfCancel" }
  /** sendEvent a memo, sleep past it, then waitForEvent it with a look-back (found), then again (not found: already received). */
  | { t: "recall"; sleepMs: number }
  /**
   * waitForSignal `sig/<start event id>:<index>`; the simulation sends it `sendAfterMs` after the
   * run's start event (or never), from `senders` senders at once, each with an ID of its own, and
   * with `resend` each delivered one again under its ID (a duplicate).
   */
  | SignalItem
  /**
   * createCallback, then waitForCallback; the simulation POSTs to the URL `postAfterMs` after the
   * run's start event (or never), `posts` times at once (one may win).
   */
  | { t: "callback"; timeoutMs: number; postAfterMs?: number; posts: 1 | 2 }
  /** step.fetch to the simulation's target, which answers after `ms` (a model call, when long). */
  | { t: "fetch"; ms: number };

export interface SignalItem {
  t: "signal";
  timeoutMs: number;
  sendAfterMs?: number;
  senders: 1 | 2;
  resend: boolean;
}

/** The signal the `index`-th item of the run started by `eventId` waits for. */
export const signalName = (eventId: string, index: number) => `sig/${eventId}:${index}`;

export interface RunPlan {
  key: string;
  /** Which interpreter: retries 0 or 2. */
  fn: "r0" | "r2";
  program: Item[];
  /** Cancelled from outside this long after the run was sent: by its cancelOn event, or the API. */
  cancel?: { afterMs: number; via: "event" | "api" };
  /** Paused through the API this long after it was sent, and resumed `forMs` after the pause. */
  pause?: { afterMs: number; forMs: number };
}

const NAMES = ["work", "fetch", "save", "charge"];

export function valueOf(kind: ValueKind, seed: string): unknown {
  switch (kind) {
    case "int":
      return [...seed].reduce((sum, ch) => (sum * 31 + ch.charCodeAt(0)) % 1_000_003, 7);
    case "nul":
      return `a\u0000b${seed}`;
    case "surrogate":
      return `\ud800${seed}\udfff`;
    case "keys":
      return { b: 1, a: 2, "10": 3, "2": 4, [seed]: null };
    case "deep": {
      let deep: unknown = seed;
      for (let i = 0; i < 50; i++) deep = [deep];
      return deep;
    }
    case "big":
      return seed.repeat(Math.ceil(4_000 / seed.length));
    case "null":
      return null;
  }
}

const valueKind = fc.constantFrom<ValueKind>("int", "int", "int", "nul", "surrogate", "keys", "deep", "big", "null");

const runItem: fc.Arbitrary<RunItem> = fc.record(
  {
    t: fc.constant("run" as const),
    name: fc.constantFrom(...NAMES),
    fail: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }),
    nonRetriable: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
    catch: fc.boolean(),
    value: valueKind,
    retries: fc.integer({ min: 0, max: 3 }),
  },
  // About half the steps carry a retry policy of their own: fast-check leaves an optional key out about half the time.
  { requiredKeys: ["t", "name", "fail", "nonRetriable", "catch", "value"] },
);

const leafItem: fc.Arbitrary<Item> = fc.oneof(
  { weight: 6, arbitrary: runItem },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("sleep" as const), ms: fc.integer({ min: 10, max: 300 }) }) },
  // Children end 3 s after they start: a long request meets that end on its way.
  { weight: 2, arbitrary: fc.record({ t: fc.constant("fetch" as const), ms: fc.constantFrom(10, 2_500, 5_000) }) },
);

const item: fc.Arbitrary<Item> = fc.oneof(
  { weight: 10, arbitrary: runItem },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("parallel" as const), branches: fc.array(runItem, { minLength: 2, maxLength: 3 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("sleep" as const), ms: fc.integer({ min: 10, max: 400 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("ask" as const), timeoutMs: fc.integer({ min: 2_000, max: 4_000 }), replyDelayMs: fc.constantFrom(0, 0, 50, 300) }) },
  {
    weight: 2,
    arbitrary: fc.record(
      { t: fc.constant("wait" as const), timeoutMs: fc.integer({ min: 1_500, max: 3_000 }), pingAfterMs: fc.integer({ min: 0, max: 2_000 }) },
      { requiredKeys: ["t", "timeoutMs"] },
    ),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("send" as const), count: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("recall" as const), sleepMs: fc.integer({ min: 10, max: 100 }) }) },
  {
    weight: 2,
    arbitrary: fc.record(
      {
        t: fc.constant("signal" as const),
        timeoutMs: fc.integer({ min: 1_500, max: 3_000 }),
        sendAfterMs: fc.integer({ min: 0, max: 2_500 }),
        senders: fc.constantFrom<1 | 2>(1, 1, 2),
        resend: fc.boolean(),
      },
      { requiredKeys: ["t", "timeoutMs", "senders", "resend"] },
    ),
  },
  {
    weight: 2,
    arbitrary: fc.record(
      { t: fc.constant("callback" as const), timeoutMs: fc.integer({ min: 1_500, max: 3_000 }), postAfterMs: fc.integer({ min: 0, max: 2_500 }), posts: fc.constantFrom<1 | 2>(1, 2) },
      { requiredKeys: ["t", "timeoutMs", "posts"] },
    ),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("fetch" as const), ms: fc.constantFrom(10, 10, 200, 2_500, 5_000) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("invoke" as const), program: fc.array(leafItem, { minLength: 1, maxLength: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("bodyError" as const), times: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.constant({ t: "selfCancel" as const }) },
);

export const program: fc.Arbitrary<Item[]> = fc.array(item, { minLength: 1, maxLength: 6 });

export function runPlans(count: number, schedule: number): fc.Arbitrary<RunPlan[]> {
  return fc.array(
    fc.record(
      {
        fn: fc.constantFrom<"r0" | "r2">("r0", "r2", "r2"),
        program,
        cancel: fc.record({ afterMs: fc.integer({ min: 0, max: 3_000 }), via: fc.constantFrom<"event" | "api">("event", "api") }),
        pause: fc.record({ afterMs: fc.integer({ min: 0, max: 2_500 }), forMs: fc.integer({ min: 0, max: 1_500 }) }),
      },
      { requiredKeys: ["fn", "program"] },
    ),
    { minLength: count, maxLength: count },
  ).map((plans) =>
    plans.map((plan, n) => ({
      ...plan,
      key: `s${schedule}-r${n}`,
      // About one run in eight is cancelled from outside.
      cancel: plan.cancel && n % 8 === 3 ? plan.cancel : undefined,
      // And about one in eight paused for a while.
      pause: plan.pause && n % 8 === 5 ? plan.pause : undefined,
    })),
  );
}
