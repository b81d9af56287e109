/**
 * SIGKILL the dev server (`stepwise dev`, embedded PGlite in a data folder) in the middle of
 * runs and start it again on the same folder: nothing is lost. Sleeping runs wake on time,
 * running runs resume, and steps that had completed do not run again.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve as serveNode, type ServerType } from "@hono/node-server";
import type { RunView } from "@stepwise/engine";
import { Stepwise } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/hono";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { freePort } from "../support/net.ts";

const executions = new Map<string, number>();
const ran = (key: string) => executions.set(key, (executions.get(key) ?? 0) + 1);

const client = new Stepwise({
  id: "crash",
  dev: true,
  schemas: { "crash/sleep": z.object({}), "crash/busy": z.object({}) },
});
const sleeper = client.createFunction({ id: "sleeper", triggers: [{ event: "crash/sleep" }] }, async ({ step, runId }) => {
  const before = await step.run("before", () => (ran(`${runId}:before`), Date.now()));
  await step.sleep("nap", "2s");
  const after = await step.run("after", () => (ran(`${runId}:after`), Date.now()));
  return { slept: after - before };
});
const busy = client.createFunction({ id: "busy", triggers: [{ event: "crash/busy" }] }, async ({ step, runId }) => {
  for (let i = 0; i < 12; i++) {
    await step.run(`s${i}`, async () => {
      ran(`${runId}:s${i}`);
      await new Promise((resolve) => setTimeout(resolve, 60));
      return i;
    });
  }
  return "done";
});

describe("stepwise dev survives SIGKILL", () => {
  let appServer: ServerType;
  let appUrl: string;
  let dataDir: string;
  let port: number;
  let child: ChildProcess | undefined;
  const output: string[] = [];

  async function startExecutor(): Promise<void> {
    child = spawn(process.execPath, ["apps/server/bin/stepwise.mjs", "dev", "--port", String(port), "--data-dir", dataDir, "--app", appUrl], {
      env: { ...process.env, STEPWISE_DEV: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (chunk) => output.push(String(chunk)));
    child.stderr!.on("data", (chunk) => output.push(String(chunk)));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const functions = await api<{ functions: unknown[] }>("/api/functions").catch(() => null);
      if (functions && functions.functions.length === 2) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`executor did not start:\n${output.join("")}`);
  }

  async function api<T>(path: string, init?: RequestInit): Promise<T> {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, init);
    if (!response.ok) throw new Error(`${path}: ${response.status}`);
    return (await response.json()) as T;
  }

  const runOf = async (eventId: string) => (await api<{ runs: RunView[] }>(`/api/events/${eventId}/runs`)).runs[0];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "stepwise-crash-"));
    port = await freePort();
    const app = new Hono();
    app.on(["GET", "POST", "PUT"], "/api/durable", serve({ client, functions: [sleeper, busy] }));
    await new Promise<void>((resolve) => {
      appServer = serveNode({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) => {
        appUrl = `http://127.0.0.1:${info.port}/api/durable`;
        resolve();
      });
    });
    await startExecutor();
  });

  afterAll(async () => {
    child?.kill("SIGKILL");
    await new Promise<void>((resolve) => appServer?.close(() => resolve()));
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("loses nothing: sleeping runs wake on time, running runs resume, completed steps do not run again", async () => {
    const send = (name: string) =>
      api<{ ids: string[] }>("/api/events", { method: "POST", body: JSON.stringify(Array.from({ length: 3 }, () => ({ name, data: {} }))) });
    const sleeping = (await send("crash/sleep")).ids;
    const running = (await send("crash/busy")).ids;
    // Kill once every sleeper sleeps and the busy runs are part-way through their steps.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const runs = await Promise.all([...sleeping, ...running].map(runOf));
      const asleep = runs.slice(0, 3).every((run) => run?.status === "sleeping");
      const midway = runs.slice(3).every((run) => (run?.steps.filter((s) => s.status === "completed").length ?? 0) >= 3);
      if (asleep && midway) break;
      if (Date.now() > deadline) throw new Error(`runs did not get going:\n${output.join("")}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const before = await Promise.all([...sleeping, ...running].map(runOf));
    const killedAt = Date.now();
    child!.kill("SIGKILL");
    await new Promise((resolve) => child!.once("exit", resolve));

    await startExecutor();
    const finished = await waitAll([...sleeping, ...running], runOf);
    expect(finished.map((run) => run.status)).toEqual(Array(6).fill("completed"));

    for (const run of finished.slice(0, 3)) expect((run.output as { slept: number }).slept).toBeGreaterThanOrEqual(2_000);
    // Every step completed before the kill ran exactly once, across both executor lives.
    for (const run of before) {
      for (const step of run!.steps.filter((s) => s.status === "completed")) {
        expect(executions.get(`${run!.id}:${step.id}`), `${run!.id}:${step.id}`).toBe(1);
      }
    }
    // A step body runs again only if it was running when the executor died: at most one per run.
    for (const run of finished.slice(3)) {
      const repeated = run.steps.filter((s) => (executions.get(`${run.id}:${s.id}`) ?? 0) > 1);
      expect(repeated.length).toBeLessThanOrEqual(1);
    }
    expect(Date.now() - killedAt).toBeLessThan(20_000);
  });
});

async function waitAll(ids: string[], runOf: (id: string) => Promise<RunView | undefined>): Promise<RunView[]> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const runs = await Promise.all(ids.map(runOf));
    if (runs.every((run) => run && ["completed", "failed", "cancelled", "skipped"].includes(run.status))) return runs as RunView[];
    if (Date.now() > deadline) throw new Error(`runs did not finish: ${JSON.stringify(runs.map((r) => r?.status))}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
