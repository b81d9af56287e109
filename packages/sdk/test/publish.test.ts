/**
 * `publish` in the SDK, one invocation at a time against a recording executor: a message goes
 * out when the code that publishes it runs for the first time, never again on the replays of
 * later invocations, parallel branches included; a bad message is a typed error thrown at the
 * call; a message the executor does not take is dropped, never an error of the run.
 */
import type { StoredStep } from "@stepwise/protocol";
import { describe, expect, it } from "vitest";
import type { ExecutorTransport } from "../src/api.ts";
import { execute } from "../src/execution.ts";
import { Stepwise } from "../src/index.ts";
import { FailureNotices } from "../src/notices.ts";
import { done, request } from "./helpers.ts";

const warnings: string[] = [];
const quiet = { debug() {}, info() {}, warn: (line: string) => void warnings.push(line), error() {} };
const client = new Stepwise({ id: "shop", dev: true, logger: quiet });

function executor(answer: () => Promise<Response> = async () => Response.json({ ok: true, seq: 1 })) {
  const sent: string[] = [];
  const transport: ExecutorTransport = {
    fetch: (async (_url: string, init: RequestInit) => {
      const body = JSON.parse(String(init.body)) as { messages: Array<{ topic: string; data: unknown }> };
      sent.push(...body.messages.map((m) => `${m.topic}:${JSON.stringify(m.data)}`));
      return answer();
    }) as typeof fetch,
    baseUrl: "http://executor.test",
    signingKey: "key",
    notices: new FailureNotices(quiet),
  };
  return { sent, transport };
}

const pending = (position: number, name: string): StoredStep => ({ id: name, name, kind: "run", position, status: "pending" });

const pages = client.createFunction({ id: "fulfil", triggers: [{ event: "order/created" }] }, async ({ step, publish }) => {
  await publish("status", "reading");
  let read = 0;
  await Promise.all(["a", "b", "c"].map((page) => step.run(page, () => page.toUpperCase()).then(() => publish("progress", `${++read}/3`))));
  await publish("status", "all read");
  await step.run("summary", () => "ok");
  return "done";
});

describe("publish in the SDK", () => {
  it("sends each message once across the invocations of a run with parallel steps", async () => {
    const { sent, transport } = executor();
    const invocations: Array<[StoredStep[], string?]> = [
      [[]], // discovers the three branches
      [[pending(1, "b"), pending(2, "c")], "a"], // each branch in an invocation of its own
      [[done(0, "a", "A"), pending(2, "c")], "b"],
      [[done(0, "a", "A"), pending(1, "b")]], // one that went on early: b and c still out
      [[done(0, "a", "A"), done(1, "b", "B")], "c"],
      [[done(0, "a", "A"), done(1, "b", "B"), done(2, "c", "C")]], // all in: the body goes on
      [[done(0, "a", "A"), done(1, "b", "B"), done(2, "c", "C"), done(3, "summary", "ok")]],
    ];
    for (const [steps, targetStep] of invocations) await execute(pages, request(steps, targetStep ? { targetStep } : {}), { transport });
    expect(sent).toEqual(['status:"reading"', 'progress:"1/3"', 'progress:"2/3"', 'progress:"3/3"', 'status:"all read"']);
  });

  it("throws a typed error at the call for a message the executor would refuse", async () => {
    const { transport } = executor();
    const tries: Record<string, unknown> = {};
    const bad = client.createFunction({ id: "fulfil", triggers: [{ event: "order/created" }] }, async ({ publish }) => {
      const attempts: Record<string, () => Promise<void>> = {
        empty: () => publish("", 1),
        big: () => publish("big", "x".repeat(70 * 1024)),
        bigint: () => publish("n", { n: 1n }),
        fn: () => publish("fn", () => 1),
        lone: () => publish("lone", { toJSON: () => "\ud800" }),
      };
      for (const [name, attempt] of Object.entries(attempts)) {
        try {
          await attempt();
          tries[name] = "sent";
        } catch (error) {
          tries[name] = `${(error as Error).name}: ${(error as Error).message}`;
        }
      }
      return "done";
    });
    await execute(bad, request(), { transport });
    expect(tries.empty).toMatch(/^TypeError: publish\(""\): topic must not be empty/);
    expect(tries.big).toMatch(/^RangeError: publish\("big", …\): data is \d+ bytes as JSON, over the 65536/);
    expect(tries.bigint).toMatch(/^TypeError: publish\("n", …\): data must be JSON/);
    expect(tries.fn).toMatch(/^TypeError: publish\("fn", …\): data must be JSON/);
    expect(tries.lone).toMatch(/^TypeError: publish\("lone", …\): data .*surrogate/i);
  });

  it("drops what the executor does not take, with a warning naming the run, and the function goes on", async () => {
    const { sent, transport } = executor(async () => new Response("<html>502</html>", { status: 502 }));
    warnings.length = 0;
    const result = await execute(pages, request([done(0, "a", "A"), done(1, "b", "B"), done(2, "c", "C")]), { transport });
    expect(result.status).toBe(206);
    expect(sent.length).toBeGreaterThan(0);
    expect(warnings.join("\n")).toMatch(/run run-1: publish to http:\/\/executor\.test\/api\/publish: the executor answered 502/);
  });
});
