/**
 * The agent example (apps/examples/agent) under SIGKILL: its app and two `stepwise start`
 * executors (PostgreSQL through the Neon driver) are killed at random and restarted, at least
 * ten times, while three research runs plan, search, wait for a person's approval and write
 * their reports. The local test model server (in this process, so it outlives every kill)
 * counts the calls: every run completes; a search ran again only when a kill came between its
 * calls (its invocation died while it ran); and the model was called no more often than the
 * runs' model steps plus the calls a killed executor had on their way.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { startTestModel, type TestModel } from "@stepwise/example-agent/test-model";
import { stepwise, functions } from "@stepwise/example-agent";
import type { RunView } from "@stepwise/engine";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_KEY, Cluster, EVENT_KEY, SIGNING_KEY } from "../support/cluster.ts";
import { freePort } from "../support/net.ts";
import { postgresAvailable } from "../support/postgres.ts";

const RUNS = 3;
const MODEL_STEPS_PER_RUN = 2;
/** The SDK's checkpointing budget: the longest an invocation runs steps (DEFAULT_MAX_RUNTIME_MS), with a second to spare. */
const INVOCATION_BUDGET_MS = 6_000;
/**
 * How long after the model answered its answer may still be on its way into the store: read by
 * the executor and committed, a few ms, far longer on a loaded machine. A kill in that moment
 * loses a call the model already counted as answered (seen in CI: one call paid again with
 * none pending at any kill).
 */
const ANSWER_ON_ITS_WAY_MS = 500;

describe.runIf(postgresAvailable)("the agent example, killed at random", () => {
  let model: TestModel;
  let cluster: Cluster;
  let appPort: number;
  let executorPorts: number[];
  let app: ChildProcess | undefined;
  const appOutput: string[] = [];

  /**
   * Starts the example's app process and waits until it answers. One process, tsx as a loader:
   * the tsx command runs the script in a child of its own, which a SIGKILL of the command left
   * running after every kill and every test run.
   */
  async function startApp(): Promise<void> {
    app = spawn(process.execPath, ["--import", "tsx", "apps/examples/agent/src/main.ts"], {
      env: {
        ...(process.env as Record<string, string>),
        PORT: String(appPort),
        STEPWISE_DEV: "",
        STEPWISE_SIGNING_KEY: SIGNING_KEY,
        STEPWISE_EVENT_KEY: EVENT_KEY,
        STEPWISE_API_KEY: API_KEY,
        // Checkpoints and publishes go to the first executor; while it is down they fail and the
        // results travel in the invocations' answers instead.
        STEPWISE_BASE_URL: `http://127.0.0.1:${executorPorts[0]}`,
        AGENT_TEST_MODEL_URL: model.url,
        OPENAI_API_KEY: "",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    for (const stream of [app.stdout!, app.stderr!]) stream.on("data", (chunk) => appOutput.push(String(chunk)));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (app.exitCode !== null) throw new Error(`the agent app exited:\n${appOutput.join("")}`);
      if (await fetch(`http://127.0.0.1:${appPort}/`).then((r) => r.ok, () => false)) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`the agent app did not start:\n${appOutput.join("")}`);
  }

  async function killApp(): Promise<void> {
    if (!app || app.exitCode !== null || app.signalCode !== null) return;
    const exited = new Promise((resolve) => app!.once("exit", resolve));
    app.kill("SIGKILL");
    await exited;
  }

  beforeAll(async () => {
    // Slow enough that kills of executors catch model calls on their way.
    model = await startTestModel({ delayMs: 1_200 });
    appPort = await freePort();
    executorPorts = [await freePort(), await freePort()];
    cluster = new Cluster({
      client: stepwise,
      ports: executorPorts,
      functions,
      appUrl: `http://127.0.0.1:${appPort}/api/durable`,
      executors: 2,
      env: { STEPWISE_LEASE_MS: "2000", STEPWISE_MAINTENANCE_MS: "2000", STEPWISE_PUBLIC_URL: "http://executor.invalid" },
    });
    // The executors sync the app when they start, so it runs first, calling the first executor's port.
    await startApp();
    await cluster.start();
  }, 120_000);

  /** Model calls a kill now catches on their way: not answered yet, or answered a moment ago. */
  const onTheirWay = () =>
    model.pending() + model.calls.filter((call) => call.kind === "model" && call.endedAt !== undefined && Date.now() - call.endedAt < ANSWER_ON_ITS_WAY_MS).length;

  afterAll(async () => {
    await killApp();
    await cluster?.stop();
    await model?.close();
  }, 60_000);

  it("completes every run through at least ten kills, paying for no finished call twice", { timeout: 200_000 }, async () => {
    const ids = await cluster.send(Array.from({ length: RUNS }, (_, n) => ({ name: "research/asked", data: { topic: `topic ${n}` } })));
    const kills: Array<{ at: number; target: string; pendingModelCalls: number }> = [];
    const approved = new Set<string>();
    let runs: RunView[] = [];
    const deadline = Date.now() + 170_000;
    while (Date.now() < deadline) {
      runs = await cluster.runs(ids).catch(() => runs);
      // A person approves each run once it waits; any executor takes any callback.
      for (const run of runs) {
        const link = run.steps.find((step) => step.id === "approval-link")?.output as { url: string } | undefined;
        const waits = run.steps.find((step) => step.id === "approval")?.status === "waiting";
        if (!link || !waits || approved.has(run.id)) continue;
        const live = cluster.executors.find((e) => e.process.exitCode === null && e.process.signalCode === null);
        if (!live) continue;
        const url = link.url.replace("http://executor.invalid", `http://127.0.0.1:${live.port}`);
        const answer = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ approved: true }) }).catch(() => null);
        if (answer && (answer.status === 200 || answer.status === 409)) approved.add(run.id);
      }
      const appKills = kills.filter((kill) => kill.target === "app").length;
      if (runs.length === RUNS && runs.every((run) => run.status === "completed") && kills.length >= 10 && appKills >= 2) break;
      if (runs.some((run) => run.status === "failed" || run.status === "cancelled")) break;
      // A random moment, or (a few times) one when a model call is on its way: then both
      // executors die, so the one making it surely does.
      const interval = 700 + Math.random() * 1_300;
      let duringCall = false;
      for (let waited = 0; waited < interval && !duringCall; waited += 50) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        duringCall = model.pending() > 0 && kills.filter((kill) => kill.pendingModelCalls > 0).length < 3 && Math.random() < 0.3;
      }
      if (duringCall) {
        const pendingModelCalls = onTheirWay();
        await Promise.all([cluster.kill(0), cluster.kill(1)]);
        kills.push({ at: Date.now(), target: "executors 0 and 1", pendingModelCalls }, { at: Date.now(), target: "executor 1", pendingModelCalls: 0 });
        await Promise.all([cluster.startExecutor(0), cluster.startExecutor(1)]);
        continue;
      }
      const target = Math.floor(Math.random() * 3);
      kills.push({ at: Date.now(), target: target === 2 ? "app" : `executor ${target}`, pendingModelCalls: target === 2 ? 0 : onTheirWay() });
      if (target === 2) {
        await killApp();
        await startApp();
      } else {
        await cluster.kill(target);
        await cluster.startExecutor(target);
      }
    }

    const logs = () => `${cluster.logs().slice(-3_000)}\n--- app\n${appOutput.join("").slice(-2_000)}`;
    expect(runs.map((run) => run.status), logs()).toEqual(ids.map(() => "completed"));
    expect(kills.length).toBeGreaterThanOrEqual(10);
    expect(kills.filter((kill) => kill.target === "app").length).toBeGreaterThanOrEqual(2);
    for (const run of runs) {
      expect(run.output).toMatchObject({ status: "done", report: expect.stringMatching(/^Report on topic \d: 3 findings/) });
      // Each model step recorded the tokens the model reported.
      for (const id of ["plan", "report"]) expect(run.steps.find((step) => step.id === id)?.usage?.inputTokens).toBeGreaterThan(0);
    }

    // The model: one call per model step, and at most one more for each call a killed executor had on its way (its answer included).
    const modelCalls = model.calls.filter((c) => c.kind === "model").length;
    const orphaned = kills.reduce((sum, kill) => sum + kill.pendingModelCalls, 0);
    expect(modelCalls).toBeGreaterThanOrEqual(RUNS * MODEL_STEPS_PER_RUN);
    // The case that costs money was played: executors died with a model call on its way.
    expect(orphaned).toBeGreaterThan(0);
    expect(modelCalls, JSON.stringify(model.calls.filter((c) => c.kind === "model"))).toBeLessThanOrEqual(RUNS * MODEL_STEPS_PER_RUN + orphaned);

    // A search ran again only when its invocation died while it ran: a kill came after that
    // invocation began (at most the checkpointing budget, 5 s, before the search: an invocation
    // whose executor was killed runs on in the app) and before the search ran again.
    const searches = new Map<string, number[]>();
    for (const call of model.calls.filter((c) => c.kind === "search")) searches.set(call.label, [...(searches.get(call.label) ?? []), call.startedAt]);
    expect(searches.size).toBe(RUNS * 3);
    for (const [key, starts] of searches) {
      for (let i = 1; i < starts.length; i++) {
        const excused = kills.some((kill) => kill.at > starts[i - 1]! - INVOCATION_BUDGET_MS && kill.at < starts[i]!);
        expect(excused, `search ${key} ran again at ${starts[i]} with no kill since its invocation began (${starts[i - 1]})`).toBe(true);
      }
    }
    const repeatedSearches = [...searches.values()].reduce((sum, starts) => sum + starts.length - 1, 0);
    console.log(
      `agent under kills: ${kills.length} kills (${kills.filter((k) => k.target === "app").length} of the app), ` +
        `${modelCalls} model calls for ${RUNS * MODEL_STEPS_PER_RUN} model steps (${orphaned} on their way at a kill of executors), ${repeatedSearches} searches repeated`,
    );
  });
});
