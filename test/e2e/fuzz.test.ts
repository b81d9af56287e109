/**
 * Generated requests against every endpoint of the executor and of serve(), in production mode
 * (keys enforced): bodies that are JSON, near-JSON and garbage, names and IDs with NUL, lone
 * surrogates and newlines, percent-encoded paths, any method, headers with the right keys and
 * wrong ones, signatures that are valid, well-shaped or nonsense. Every answer must come within
 * seconds and be below 500, and a refused request (4xx) must change nothing: no event, run or
 * app stored, no function re-pointed, no step body run. Seeded, so a failure replays; fast-check
 * shrinks it to the smallest request that breaks.
 */
import { InvokeResponseSchema, PROTOCOL_VERSION, requestTarget, sign } from "@stepwise/protocol";
import { Stepwise } from "@stepwise/sdk";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STORE_KINDS, startStack, type Stack } from "../support/stack.ts";

const SIGNING_KEY = "fuzz-signing-key";
const EVENT_KEY = "fuzz-event-key";
const API_KEY = "fuzz-api-key";
const SEED = 20261202;
const RUNS = Number(process.env.STEPWISE_FUZZ_RUNS ?? 1_500);

let bodies = 0;
const client = new Stepwise({ id: "fuzz", dev: false, signingKey: SIGNING_KEY });
// Triggered by an event the generators never send: every body that runs was run by a generated invocation.
const hit = client.createFunction({ id: "hit", triggers: [{ event: "fuzz/never-sent" }], retries: 0 }, async ({ event, step }) =>
  step.run("echo", () => {
    bodies++;
    return event.data;
  }),
);

// ---- generators -------------------------------------------------------------------------

/** Text that breaks things: NUL, lone surrogates, newlines, reserved prefixes, long runs. */
const nasty = fc.constantFrom("\u0000", "a\u0000b", "\ud800", "x\udc00", "a\nb", "\r\n", "%00", "../..", "stepwise/function.failed", "stepwise:run:step:0", "x".repeat(300), "💥", "");
const text = fc.oneof(nasty, fc.string({ maxLength: 20 }), fc.string({ unit: "binary", maxLength: 20 }), fc.constantFrom("fuzz/hit", "fuzz/none", "hit"));
const headerText = fc.stringMatching(/^[\x20-\x7e]{0,40}$/);
const number = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(-1, 0, 1.5, 2 ** 53, 1e308));
const json = fc.oneof(fc.jsonValue({ maxDepth: 3 }), text, number);

const event = fc.record({ name: text, data: json, id: text, ts: number }, { requiredKeys: [] });
const appDescription = fc.record(
  {
    appId: fc.oneof(text, fc.constantFrom("fuzz", "fuzz-hit", "other")),
    url: fc.oneof(text, fc.constantFrom("http://127.0.0.1:9/api/durable", "file:///etc/passwd", "http://169.254.169.254/", "https://x.example/api/durable")),
    sdk: text,
    functions: fc.array(fc.record({ id: text, triggers: fc.array(fc.record({ event: text, if: text }, { requiredKeys: ["event"] }), { maxLength: 2 }), retries: number }, { requiredKeys: [] }), { maxLength: 3 }),
  },
  { requiredKeys: [] },
);
const storedStep = fc.record({
  id: text,
  name: text,
  kind: fc.oneof(fc.constantFrom("run", "sleep", "wait", "invoke", "send"), text),
  position: number,
  status: fc.oneof(fc.constantFrom("completed", "failed", "pending"), text),
  output: json,
  error: fc.record({ name: text, message: text }),
}, { requiredKeys: [] });
const id = fc.stringMatching(/^[0-9A-Za-z:_-]{1,30}$/);
const validEvent = fc.record({ id, name: fc.constantFrom("fuzz/never-sent", "order/created"), data: fc.dictionary(fc.string({ maxLength: 5 }), json, { maxKeys: 3 }), ts: fc.nat() });
/** An invocation as the executor would send one, often: the SDK then runs (or replays) the function. */
const wellFormedInvocation = fc.record({
  version: fc.constant(PROTOCOL_VERSION),
  run: fc.record({ id, appId: fc.oneof(fc.constant("fuzz"), fc.constant("fuzz"), text), functionId: fc.constant("hit"), attempt: fc.nat({ max: 3 }) }),
  event: validEvent,
  events: fc.constant([]),
  steps: fc.array(
    fc.oneof(
      fc.record({ id: fc.oneof(fc.constant("echo"), id), name: fc.constant("echo"), kind: fc.constant("run"), position: fc.nat({ max: 3 }), status: fc.constant("completed"), output: json }),
      fc.record({ id: fc.oneof(fc.constant("echo"), id), name: fc.constant("echo"), kind: fc.constant("run"), position: fc.nat({ max: 3 }), status: fc.constant("failed"), error: fc.record({ name: text, message: text }) }),
      fc.record({ id: fc.oneof(fc.constant("echo"), id), name: text, kind: fc.constantFrom("run", "sleep", "wait"), position: fc.nat({ max: 3 }), status: fc.constant("pending") }),
    ),
    { maxLength: 3 },
  ),
  targetStep: fc.option(fc.oneof(fc.constant("echo"), id), { nil: undefined }),
});
const invocation = fc.oneof(wellFormedInvocation, wellFormedInvocation, fc.record({
  version: fc.oneof(fc.constant(1), number),
  run: fc.record({ id: text, functionId: fc.oneof(fc.constant("hit"), text), attempt: number }, { requiredKeys: [] }),
  event,
  events: fc.array(event, { maxLength: 2 }),
  steps: fc.array(storedStep, { maxLength: 3 }),
  targetStep: text,
}, { requiredKeys: [] }));

/** A body: valid-looking JSON of the right kind, other JSON, cut-off JSON, or bytes. */
function body(shaped: fc.Arbitrary<unknown>): fc.Arbitrary<string> {
  const whole = shaped.map((value) => JSON.stringify(value) ?? "null");
  return fc.oneof(
    whole,
    fc.array(shaped, { maxLength: 4 }).map((values) => JSON.stringify(values)),
    whole.chain((s) => fc.nat({ max: s.length }).map((n) => s.slice(0, n))),
    json.map((value) => JSON.stringify(value) ?? "null"),
    fc.string({ unit: "binary", maxLength: 100 }),
    fc.constantFrom('{"name":"fuzz/hit","data":{"n":1e309}}', "[".repeat(5_000), `{"name":"fuzz/hit","data":${"[".repeat(3_000)}${"]".repeat(3_000)}}`, "null", "[]", '""'),
  );
}

/** A path segment, percent-encoded (or broken on purpose). */
const segment = fc.oneof(
  fc.string({ maxLength: 20 }).map(encodeURIComponent),
  fc.constantFrom("%00", "%ED%A0%80", "%", "%zz", "..", "%0Aforged", "x".repeat(300), "01J000000000000000000000"),
);
const method = fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS");

interface Call {
  method: string;
  path: string;
  body?: string;
  headers: Record<string, string>;
  /** How to sign it, if at all: for its own target, or for another. */
  signature: "none" | "valid" | "other-target" | "shaped" | "garbage";
}

interface Route {
  method: string;
  path: string;
  shaped: fc.Arbitrary<unknown>;
  /** The bearer key this route wants, if any: sent most of the time, so requests get past it. */
  key?: string;
}

function call(route: fc.Arbitrary<Route>): fc.Arbitrary<Call> {
  return route.chain(({ method: wanted, path, shaped, key }) =>
    fc.oneof({ weight: 4, arbitrary: fc.constant(wanted) }, { weight: 1, arbitrary: method }).chain((m) =>
      fc.record({
        method: fc.constant(m),
        path: fc.constant(path),
        body: m === "GET" || m === "OPTIONS" ? fc.constant(undefined) : body(shaped),
        headers: fc.record(
          {
            authorization: fc.oneof(
              { weight: key ? 4 : 0, arbitrary: fc.constant(`Bearer ${key}`) },
              { weight: 1, arbitrary: fc.constantFrom(`Bearer ${EVENT_KEY}`, `Bearer ${API_KEY}`, `Bearer ${SIGNING_KEY}`) },
              { weight: 1, arbitrary: headerText },
            ),
            "content-type": fc.oneof(fc.constant("application/json"), headerText),
          },
          { requiredKeys: [] },
        ),
        signature: fc.constantFrom("none", "valid", "valid", "valid", "other-target", "shaped", "garbage"),
      }),
    ),
  );
}

const executorRoutes: fc.Arbitrary<Route> = fc.oneof(
  fc.constant({ method: "POST", path: "/api/events", shaped: event as fc.Arbitrary<unknown>, key: EVENT_KEY }),
  fc.constant({ method: "POST", path: "/api/apps", shaped: appDescription as fc.Arbitrary<unknown> }),
  fc.constant({ method: "GET", path: "/api/functions", shaped: json, key: API_KEY }),
  segment.map((id) => ({ method: "GET", path: `/api/runs/${id}`, shaped: json, key: API_KEY })),
  segment.map((id) => ({ method: "POST", path: `/api/runs/${id}/cancel`, shaped: json, key: API_KEY })),
  segment.map((id) => ({ method: "GET", path: `/api/events/${id}/runs`, shaped: json, key: API_KEY })),
  fc.tuple(method, fc.array(segment, { maxLength: 3 })).map(([m, parts]) => ({ method: m, path: `/${parts.join("/")}`, shaped: json })),
);

const appRoutes: fc.Arbitrary<Route> = fc.tuple(fc.constantFrom("POST", "POST", "POST", "GET", "PUT"), fc.option(fc.oneof(fc.constant("hit"), fc.constant("hit"), text), { nil: undefined })).map(([m, fnId]) => ({
  method: m,
  path: `/api/durable${fnId === undefined ? "" : `?fnId=${encodeURIComponent(fnId.replace(/[\ud800-\udfff]/g, "?"))}`}`,
  shaped: invocation as fc.Arbitrary<unknown>,
}));

// ---- the run ------------------------------------------------------------------------------

async function send(base: string, c: Call): Promise<Response> {
  const headers = new Headers(c.headers);
  const url = new URL(`${new URL(base).origin}${c.path}`);
  if (c.signature !== "none") {
    const target = c.signature === "other-target" ? `${url.pathname}x${url.search}` : requestTarget(url);
    const real = await sign(SIGNING_KEY, { method: c.method, target, body: c.body ?? "" });
    headers.set("x-stepwise-signature", c.signature === "shaped" ? real.replace(/s=.{8}/, "s=00000000") : c.signature === "garbage" ? "t=1,s=zz" : real);
  }
  return fetch(url, { method: c.method, headers, body: c.body, signal: AbortSignal.timeout(5_000) });
}

function isFunctionError(answer: string): boolean {
  try {
    return InvokeResponseSchema.safeParse(JSON.parse(answer)).data?.type === "error";
  } catch {
    return false;
  }
}

describe.each(STORE_KINDS.slice(0, 2))("generated requests on %s", (store) => {
  let stack: Stack;
  /**
   * What a refused request must leave as it was. Accepted ones may start work that goes on
   * after their answer (a registered app's runs, their failure events): what that work writes
   * (derived event IDs, and the runs they trigger) is left out.
   */
  const fingerprint = async () => {
    const sql = (stack.store as unknown as { client: { query(text: string): Promise<Array<Record<string, unknown>>> } }).client;
    const [row] = await sql.query(
      `SELECT (SELECT count(*) FROM events WHERE id NOT LIKE 'stepwise:%') AS events,
              (SELECT count(*) FROM runs WHERE event_id NOT LIKE 'stepwise:%') AS runs,
              (SELECT count(*) FROM runs WHERE status = 'cancelled') AS cancelled,
              (SELECT string_agg(id || ' ' || url, ',' ORDER BY id) FROM apps) AS apps,
              (SELECT string_agg(id || ' ' || app_id || ' ' || md5(config::text), ',' ORDER BY id) FROM functions) AS functions`,
    );
    return JSON.stringify({ ...row, bodies });
  };
  const statuses = new Map<string, number>();
  const count = (what: string, status: number) => statuses.set(`${what} ${status}`, (statuses.get(`${what} ${status}`) ?? 0) + 1);

  beforeAll(async () => {
    stack = await startStack({ store, client, functions: [hit], executor: { dev: false, signingKey: SIGNING_KEY, eventKey: EVENT_KEY, apiKey: API_KEY } });
  });
  afterAll(async () => {
    console.log(`fuzz on ${store}: ${[...statuses].sort().map(([k, n]) => `${k}: ${n}`).join(", ")}`);
    await stack?.close();
  });

  for (const [what, routes, base] of [
    ["executor", executorRoutes, () => stack.executor.url],
    ["serve()", appRoutes, () => stack.appUrl],
  ] as const) {
    it(`${what}: never a 5xx or a hang, and a refused request changes nothing`, { timeout: 240_000 }, async () => {
      await fc.assert(
        fc.asyncProperty(call(routes), async (c) => {
          const before = await fingerprint();
          const response = await send(base(), c);
          const answer = await response.text();
          count(what, response.status);
          // The one 500 the wire protocol has: a function's own error, reported as { type: "error" } (the executor reads it).
          const functionError = what === "serve()" && response.status === 500 && isFunctionError(answer);
          if (!functionError) expect(response.status, `${c.method} ${c.path} answered ${response.status}: ${answer.slice(0, 300)}`).toBeLessThan(500);
          if (response.status >= 400 && !functionError) {
            expect(JSON.parse(answer), "a refusal says why").toHaveProperty("error");
            expect(await fingerprint(), `${c.method} ${c.path} was refused (${response.status}) but changed the store`).toBe(before);
          }
        }),
        { numRuns: RUNS, seed: SEED, endOnFailure: false },
      );
    });
  }
});
