/**
 * Versioned deploys over real HTTP: two versions of one app live at two URLs. Runs that started
 * on version 1 keep being invoked at version 1's deployment after version 2 registers, while new
 * runs start on version 2; once version 1's deployment is gone (it answers 404, as a deleted
 * deployment does, or refuses the connection), its runs move to version 2 and finish there.
 */
import { serve as serveNode, type ServerType } from "@hono/node-server";
import type { FunctionView, RunView } from "@stepwise/engine";
import { Stepwise } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/hono";
import { startServer, type RunningServer } from "@stepwise/server";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { eventually } from "../support/eventually.ts";
import { memoryLogger, openStore, STORE_KINDS } from "../support/stack.ts";

/** One deployment of the app: its code says which version it is; `mode` plays its platform. */
function deployment(version: string) {
  const client = new Stepwise({ id: "deploys", dev: true, schemas: { "deploys/started": z.object({ n: z.number(), napMs: z.number() }) } });
  const invoked: string[] = [];
  const flow = client.createFunction({ id: "flow", triggers: [{ event: "deploys/started" }], retries: 1 }, async ({ event, step, runId }) => {
    invoked.push(runId);
    const first = await step.run("one", () => `one from ${version}`);
    await step.sleep("nap", event.data.napMs);
    const second = await step.run("two", () => `two from ${version}`);
    return `${first}, ${second}`;
  });
  const handler = serve({ client, functions: [flow], appVersion: version });
  const state = { mode: "live" as "live" | "deleted", invoked };
  const app = new Hono();
  app.all("/api/durable", async (c) => (state.mode === "deleted" ? c.text("The deployment could not be found", 404) : handler(c)));
  return { state, app };
}

function listen(app: Hono): Promise<{ server: ServerType; url: string }> {
  return new Promise((resolve) => {
    const server = serveNode({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) => resolve({ server, url: `http://127.0.0.1:${info.port}/api/durable` }));
  });
}

describe.each(STORE_KINDS)("versioned deploys on %s", (kind) => {
  let executor: RunningServer;
  let cleanup: () => Promise<void>;
  const log = memoryLogger();
  const servers: ServerType[] = [];
  const api = async <T>(path: string, init?: RequestInit) => (await (await fetch(`${executor.url}${path}`, init)).json()) as T;
  const send = async (data: { n: number; napMs: number }) =>
    (await api<{ ids: string[] }>("/api/events", { method: "POST", body: JSON.stringify({ name: "deploys/started", data }) })).ids[0]!;
  const runOf = (eventId: string) =>
    eventually(`the run of event ${eventId}`, async () => (await api<{ runs: RunView[] }>(`/api/events/${eventId}/runs`)).runs[0], { context: () => log.lines.slice(-30).join("\n") });
  const ended = (runId: string) =>
    eventually(
      `the end of run ${runId}`,
      async () => {
        const run = await api<RunView>(`/api/runs/${runId}`);
        return ["completed", "failed", "cancelled"].includes(run.status) ? run : undefined;
      },
      { timeoutMs: 20_000, context: () => log.lines.slice(-30).join("\n") },
    );

  beforeAll(async () => {
    const opened = await openStore(kind);
    cleanup = opened.cleanup;
    executor = await startServer({ store: opened.store, dev: true, port: 0, log, allowPrivateAppUrls: true, backoff: { initialMs: 20, maxMs: 200 }, registryRefreshMs: 0 });
    process.env.STEPWISE_BASE_URL = executor.url;
  }, 60_000);

  afterAll(async () => {
    for (const server of servers) await new Promise<void>((resolve) => server.close(() => resolve()));
    await executor?.close();
    await cleanup?.();
  });

  it("runs finish on the version they started on; new runs start on the new one; a gone deployment's runs move", async () => {
    const v1 = deployment("v1");
    const v2 = deployment("v2");
    const at1 = await listen(v1.app);
    servers.push(at1.server);
    expect((await fetch(at1.url, { method: "PUT" })).status).toBe(200);

    // Two runs start on version 1 and sleep; one wakes while version 1 still serves, one after it is deleted.
    const early = await runOf(await send({ n: 1, napMs: 1_500 }));
    const late = await runOf(await send({ n: 2, napMs: 4_000 }));
    expect([early.appVersion, late.appVersion]).toEqual(["v1", "v1"]);
    await eventually("both runs asleep", async () => ((await api<RunView>(`/api/runs/${late.id}`)).status === "sleeping" && (await api<RunView>(`/api/runs/${early.id}`)).status === "sleeping" ? true : undefined));

    // Version 2 deploys at its own URL and registers: the app's URL is now its.
    const at2 = await listen(v2.app);
    servers.push(at2.server);
    expect((await fetch(at2.url, { method: "PUT" })).status).toBe(200);
    const fresh = await runOf(await send({ n: 3, napMs: 10 }));
    expect(fresh.appVersion).toBe("v2");
    expect((await ended(fresh.id)).output).toBe("one from v2, two from v2");
    expect(v1.state.invoked).not.toContain(fresh.id);

    // The run in flight finishes on version 1, which still serves it.
    expect((await ended(early.id)).output).toBe("one from v1, two from v1");
    expect(v2.state.invoked).not.toContain(early.id);

    const { functions } = await api<{ functions: FunctionView[] }>("/api/functions");
    const flow = functions.find((fn) => fn.id === "deploys-flow")!;
    expect(flow.appVersion).toBe("v2");
    expect(flow.deployments?.map((d) => [d.version, d.url])).toEqual([
      ["v1", at1.url],
      ["v2", at2.url],
    ]);

    // Version 1's deployment is deleted: its last run moves to version 2, keeping the step it ran on 1.
    v1.state.mode = "deleted";
    const moved = await ended(late.id);
    expect(moved.status).toBe("completed");
    expect(moved.output).toBe("one from v1, two from v2");
    expect(log.lines.join("\n")).toMatch(/app deploys: the deployment of version v1 is gone \(.*HTTP 404\); its runs move to/);
    const after = (await api<{ functions: FunctionView[] }>("/api/functions")).functions.find((fn) => fn.id === "deploys-flow")!;
    expect(after.deployments?.map((d) => d.version)).toEqual(["v2"]);
  }, 60_000);

  it("a deployment that refuses the connection is gone too; registering that version again brings it back", async () => {
    const v3 = deployment("v3");
    const v4 = deployment("v4");
    const at3 = await listen(v3.app);
    expect((await fetch(at3.url, { method: "PUT" })).status).toBe(200);
    const run = await runOf(await send({ n: 4, napMs: 1_500 }));
    expect(run.appVersion).toBe("v3");
    const at4 = await listen(v4.app);
    servers.push(at4.server);
    expect((await fetch(at4.url, { method: "PUT" })).status).toBe(200);
    // Version 3's server goes away: its port refuses connections.
    await new Promise<void>((resolve) => (at3.server.close(() => resolve()), (at3.server as { closeAllConnections?: () => void }).closeAllConnections?.()));
    const moved = await ended(run.id);
    expect(moved.output).toBe("one from v3, two from v4");
    expect(log.lines.join("\n")).toMatch(/the deployment of version v3 is gone \(.*ECONNREFUSED\)/);

    // Registering version 3 again (a rollback) makes it live again.
    const again = await listen(deployment("v3").app);
    servers.push(again.server);
    expect((await fetch(again.url, { method: "PUT" })).status).toBe(200);
    const flow = (await api<{ functions: FunctionView[] }>("/api/functions")).functions.find((fn) => fn.id === "deploys-flow")!;
    expect(flow.appVersion).toBe("v3");
    expect(flow.deployments?.map((d) => d.version)).toContain("v3");
  }, 60_000);
});
