/**
 * The `stepwise` commands on a running executor's API, run as a user runs them (the real bin, a
 * process of its own) against an executor in production mode: keys from the environment,
 * readable output, and exit codes a script can tell apart.
 */
import { spawn } from "node:child_process";
import { NonRetriableError, Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, type Stack } from "../support/stack.ts";

const client = new Stepwise({ id: "cli", dev: false, signingKey: "cli-key", schemas: { "cli/greet": z.object({ who: z.string() }), "cli/wait": z.object({ who: z.string() }) } });
const waiter = client.createFunction({ id: "waiter", triggers: [{ event: "cli/wait" }] }, async ({ event, step }) => {
  const approval = await step.waitForSignal("approval", { signal: `approval/${event.data.who}`, timeout: "1h" });
  return approval?.data ?? null;
});
const greet = client.createFunction({ id: "greet", triggers: [{ event: "cli/greet" }], retries: 0 }, async ({ event, step }) => {
  const hello = await step.run("hello", () => `hello ${event.data.who}`);
  await step.run("check", () => {
    if (event.data.who === "nobody") throw new NonRetriableError("nobody to greet");
  });
  await step.sleep("pause", event.data.who === "sleeper" ? "1h" : "1ms");
  return hello;
});

/** Runs `stepwise <args>`; its exit code and output. */
function stepwise(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["apps/server/bin/stepwise.mjs", ...args], { env: { ...process.env, STEPWISE_BASE_URL: "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk) => (out += String(chunk)));
    child.stderr.on("data", (chunk) => (err += String(chunk)));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code: code ?? -1, out, err }));
  });
}

describe("the stepwise commands", () => {
  let stack: Stack;
  let keys: Record<string, string>;
  beforeAll(async () => {
    stack = await startStack({
      store: "pglite",
      client,
      functions: [greet, waiter],
      // A signal no run waits for is refused after this long (5 s by default).
      executor: { dev: false, signingKey: "cli-key", eventKey: "event-key", apiKey: "api-key", signalGraceMs: 300 },
    });
    keys = { STEPWISE_BASE_URL: stack.executor.url, STEPWISE_EVENT_KEY: "event-key", STEPWISE_API_KEY: "api-key" };
  }, 60_000);
  afterAll(async () => stack?.close());

  it("sends an event, lists its run and shows the run's steps", { timeout: 60_000 }, async () => {
    const sent = await stepwise(["send", "cli/greet", "--data", '{"who":"Ada"}', "--json"], keys);
    expect(sent.code).toBe(0);
    const [eventId] = (JSON.parse(sent.out) as { ids: string[] }).ids;
    const run = await stack.waitForRun(eventId!);
    expect(run.status).toBe("completed");

    const listed = await stepwise(["runs", "--function", run.functionId, "--status", "completed"], keys);
    expect(listed.code).toBe(0);
    const [header, ...rows] = listed.out.trim().split("\n");
    expect(header).toMatch(/^RUN\s+FUNCTION\s+STATUS\s+STARTED\s+TOOK$/);
    expect(rows.find((row) => row.startsWith(run.id))).toMatch(new RegExp(`^${run.id}\\s+${run.functionId}\\s+completed\\s+`));

    const shown = await stepwise(["run", run.id], keys);
    expect(shown.code).toBe(0);
    expect(shown.out).toContain(`run ${run.id}  ${run.functionId}  completed`);
    expect(shown.out).toContain('output: "hello Ada"');
    for (const [step, kind] of [["hello", "run"], ["check", "run"], ["pause", "sleep"]]) expect(shown.out).toMatch(new RegExp(`\\n${step}\\s+${kind}\\s+completed\\s+1\\s+\\+`));
    // The timeline is in the order the code ran: the sleep, named in the invocation's answer,
    // starts once the steps checkpointed before it ended, not when the invocation was sent.
    // (Within 10 ms: the two times come from the executor's clock and the store's, each read a
    // moment off the event it stamps; on a loaded machine 3 ms apart was seen. Before the fix
    // the sleep came 93 ms early.)
    const [, check, pause] = (await stack.getRun(run.id)).steps;
    expect(Date.parse(pause!.startedAt)).toBeGreaterThanOrEqual(Date.parse(check!.endedAt!) - 10);
  });

  it("sends a signal to the run waiting for it, says when none waits, and when it was delivered before", { timeout: 60_000 }, async () => {
    const nobody = await stepwise(["signal", "approval/nobody", "--data", '{"ok":true}'], keys);
    expect(nobody.code).toBe(3);
    expect(nobody.err).toMatch(/^stepwise signal: .*approval\/nobody/);
    const [eventId] = await stack.send({ name: "cli/wait", data: { who: "ada" } });
    const waiting = await stack.waitForRun(eventId!, { status: "waiting" });
    const sent = await stepwise(["signal", "approval/ada", "--data", '{"ok":true}', "--id", "approval-1"], keys);
    expect(sent.code, sent.err).toBe(0);
    expect(sent.out.trim()).toBe(`signal approval/ada: resumed run ${waiting.id} at step approval`);
    expect((await stack.waitForRun(eventId!)).output).toEqual({ ok: true });
    const again = await stepwise(["signal", "approval/ada", "--id", "approval-1", "--json"], keys);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.out)).toMatchObject({ id: "approval-1", duplicate: true });
    expect((await stepwise(["signal"], keys)).code).toBe(2);
  });

  it("pages through runs with the command it prints", { timeout: 60_000 }, async () => {
    const ids = [];
    for (const who of ["a", "b", "c"]) ids.push(...(await stack.send({ name: "cli/greet", data: { who } })));
    const runs = await Promise.all(ids.map((id: string) => stack.waitForRun(id)));
    const first = await stepwise(["runs", "--function", runs[0]!.functionId, "--limit", "2"], keys);
    const more = /more: stepwise runs (.*)/.exec(first.out)?.[1];
    expect(more).toMatch(/^--function=\S+ --limit=2 --cursor=\S+$/);
    const second = await stepwise(["runs", ...more!.split(" ")], keys);
    expect(second.code).toBe(0);
    const listed = [...first.out.split("\n"), ...second.out.split("\n")].map((line) => line.split(/\s+/)[0]).filter((id) => runs.some((run) => run.id === id));
    expect(listed.slice(0, 3)).toEqual(runs.map((run) => run.id).reverse());
  });

  it("cancels a sleeping run, and shows a failed step's error", { timeout: 60_000 }, async () => {
    const [sleeping] = await stack.send({ name: "cli/greet", data: { who: "sleeper" } });
    const asleep = await stack.waitForRun(sleeping!, { status: "sleeping" });
    const cancelled = await stepwise(["cancel", asleep.id], keys);
    expect(cancelled.code).toBe(0);
    expect(cancelled.out).toContain(`run ${asleep.id}  ${asleep.functionId}  cancelled`);

    const [failing] = await stack.send({ name: "cli/greet", data: { who: "nobody" } });
    const failed = await stack.waitForRun(failing!);
    const shown = await stepwise(["run", failed.id], keys);
    expect(shown.out).toMatch(/error: .*nobody to greet/);
    expect(shown.out).toMatch(/\n {2}check: .*nobody to greet/);
  });

  it("replays a failed run, reruns a run from a step with an edited output", { timeout: 60_000 }, async () => {
    const [failing] = await stack.send({ name: "cli/greet", data: { who: "nobody" } });
    const failed = await stack.waitForRun(failing!);
    const replayed = await stepwise(["replay", failed.id, "--json"], keys);
    expect(replayed.code).toBe(0);
    const replay = JSON.parse(replayed.out) as { id: string; replayOf: string };
    expect(replay.replayOf).toBe(failed.id);

    const [greeting] = await stack.send({ name: "cli/greet", data: { who: "Grace" } });
    const done = await stack.waitForRun(greeting!);
    const rerun = await stepwise(["rerun", done.id, "--from", "hello", "--output", '"hi Grace"'], keys);
    expect(rerun.code).toBe(0);
    expect(rerun.out).toContain(`rerun of run ${done.id} from step "hello"`);
    const newId = /^run (\S+)/.exec(rerun.out)![1]!;
    await expect.poll(async () => (await stack.getRun(newId)).status, { timeout: 15_000 }).toBe("completed");
    expect((await stack.getRun(newId)).output).toBe("hi Grace");
  });

  it("cancels in bulk every run a filter selects, page by page, with progress", { timeout: 60_000 }, async () => {
    const since = new Date(Date.now() - 1).toISOString();
    const ids = await stack.send(Array.from({ length: 5 }, () => ({ name: "cli/greet", data: { who: "sleeper" } })));
    const runs = await Promise.all(ids.map((id: string) => stack.waitForRun(id, { status: "sleeping", timeoutMs: 30_000 })));
    const result = await stepwise(["cancel", "--function", runs[0]!.functionId, "--status", "sleeping", "--since", since, "--limit", "2"], keys);
    expect(result.code).toBe(0);
    expect(result.out.trim().split("\n")).toEqual(["cancelled 2 of 2 run(s) so far…", "cancelled 4 of 4 run(s) so far…", "cancelled 5 of 5 run(s) so far", "done: cancelled 5 run(s)"]);
    for (const run of runs) expect((await stack.getRun(run.id)).status).toBe("cancelled");
    // Both ways of naming what to cancel at once is a usage error; so is neither.
    expect((await stepwise(["cancel", runs[0]!.id, "--status", "sleeping"], keys)).code).toBe(2);
    expect((await stepwise(["replay"], keys)).code).toBe(2);
  });

  it("exits with a code of its own for each kind of failure, saying why", { timeout: 60_000 }, async () => {
    const cases: Array<[args: string[], env: Record<string, string>, code: number, message: RegExp]> = [
      [["run", "01NOSUCHRUN"], keys, 3, /No run 01NOSUCHRUN/],
      [["runs", "--status", "done"], keys, 2, /Invalid status "done"/],
      [["send", "cli/greet", "--data", "{who:1}"], keys, 2, /--data is not JSON/],
      [["send"], keys, 2, /needs an event name/],
      [["rerun", "01NOSUCHRUN"], keys, 2, /needs a run ID and the step to run again from/],
      [["rerun", "01NOSUCHRUN", "--from", "hello"], keys, 3, /No run 01NOSUCHRUN/],
      [["replay", "--status", "done"], keys, 2, /Invalid status "done"/],
      [["runs", "--colour", "red"], keys, 2, /colour/],
      [["runs"], { STEPWISE_BASE_URL: stack.executor.url }, 1, /STEPWISE_API_KEY/],
      [["runs", "--url", "http://127.0.0.1:9"], keys, 1, /could not reach the executor at http:\/\/127\.0\.0\.1:9.*is it running/],
      [["runs", "--url", "127.0.0.1:8288"], keys, 2, /not an http\(s\) URL/],
      // A missing route is the executor's failure, not "no such run".
      [["runs", "--url", `${stack.executor.url}/nothing-here`], keys, 1, /No GET \/nothing-here\/api\/runs here/],
    ];
    const results = await Promise.all(cases.map(([args, env]) => stepwise(args, env)));
    for (const [index, [args, , code, message]] of cases.entries()) {
      expect({ args, code: results[index]!.code }).toEqual({ args, code });
      expect(results[index]!.err).toMatch(message);
    }
  });
});
