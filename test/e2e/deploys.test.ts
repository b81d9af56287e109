/**
 * Versioned deploys over real HTTP: two versions of one app live at two URLs. Runs that started
 * on version 1 keep being invoked at version 1's deployment after version 2 registers, while new
 * runs start on version 2; once version 1's deployment is gone (it answers 404, as a deleted
 * deployment does, or refuses connections for longer than a restart takes), its runs move to
 * version 2 and finish there. A deployment whose instance runs an SDK older than its
 * registration gets every field of the stored steps; the others keep the compact form.
 */
import { serve as serveNode, type ServerType } from "@hono/node-server";
import type { FunctionView, RunView } from "@stepwise/engine";
import { StoredStepSchema } from "@stepwise/protocol";
import { Stepwise } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/hono";
import { startServer, type RunningServer } from "@stepwise/server";
import { Hono, type Context } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { eventually } from "../support/eventually.ts";
import { memoryLogger, openStore, STORE_KINDS } from "../support/stack.ts";

/**
 * One deployment of the app, listening at its own URL: its code says which version it is, and
 * `mode` plays its platform (a deleted deployment answers 404). `alias` is the app's public URL,
 * or, without one, the deployment registers its own URL as the app's and names no other.
 */
async function deploy(version: string, alias?: string, firstStep = "one") {
  const client = new Stepwise({ id: "deploys", dev: true, schemas: { "deploys/started": z.object({ n: z.number(), napMs: z.number() }) } });
  const invoked: string[] = [];
  const flow = client.createFunction({ id: "flow", triggers: [{ event: "deploys/started" }], retries: 1 }, async ({ event, step, runId }) => {
    invoked.push(runId);
    const first = await step.run(firstStep, () => `one from ${version}`);
    await step.sleep("nap", event.data.napMs);
    const second = await step.run("two", () => `two from ${version}`);
    return `${first}, ${second}`;
  });
  const state = { mode: "live" as "live" | "deleted" | "moved" | "older-sdk", invoked, url: "", forms: [] as StepsForm[] };
  let handler: ((c: Context) => Promise<Response>) | undefined;
  const app = new Hono();
  app.all("/api/durable", async (c) => {
    if (state.mode === "deleted") return c.text("The deployment could not be found", 404);
    if (state.mode === "moved") return c.redirect("https://elsewhere.example.com/api/durable", 301);
    if (c.req.method === "POST") {
      const form = formOf(await c.req.raw.clone().text());
      state.forms.push(form);
      // An instance of an SDK from before the compact form: it requires every field of a stored step.
      if (state.mode === "older-sdk" && form === "compact") return c.json({ error: "Body is not a Stepwise invocation: steps.0.name: expected string" }, 400);
    }
    return handler!(c);
  });
  const { server, url } = await listen(app);
  state.url = url;
  handler = serve({ client, functions: [flow], appVersion: version, ...(alias ? { serveUrl: alias, deploymentUrl: url } : {}) });
  /** Listens at the same URL again, after `server` closed: the deployment restarted. */
  const restart = () => listen(app, Number(new URL(url).port));
  return { state, server, url, restart };
}

/** How an invocation carried its stored steps: none, each with every field, or in the compact form. */
type StepsForm = "none" | "full" | "compact";
function formOf(body: string): StepsForm {
  const { steps } = JSON.parse(body) as { steps: unknown[] };
  if (steps.length === 0) return "none";
  // What an SDK from before the compact form checks each step against.
  return steps.every((step) => StoredStepSchema.safeParse(step).success) ? "full" : "compact";
}

/** The app's public URL (a platform's production alias): it forwards to the deployment it points at. */
async function alias() {
  const target = { url: "" };
  const app = new Hono();
  app.all("/api/durable", (c) => fetch(new Request(target.url + new URL(c.req.url).search, c.req.raw)));
  return { target, ...(await listen(app)) };
}

function listen(app: Hono, port = 0): Promise<{ server: ServerType; url: string }> {
  return new Promise((resolve) => {
    const server = serveNode({ fetch: app.fetch, port, hostname: "127.0.0.1" }, (info) => resolve({ server, url: `http://127.0.0.1:${info.port}/api/durable` }));
  });
}

/** Closes a deployment's server: its port refuses connections from now on. */
const shutDown = (server: ServerType) =>
  new Promise<void>((resolve) => (server.close(() => resolve()), (server as { closeAllConnections?: () => void }).closeAllConnections?.()));

/** How long a deployment refuses connections before its runs move, for this suite's executor. */
const GONE_AFTER_MS = 4_000;

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
    executor = await startServer({
      store: opened.store,
      dev: true,
      port: 0,
      log,
      allowPrivateAppUrls: true,
      backoff: { initialMs: 20, maxMs: 200 },
      registryRefreshMs: 0,
      deploymentGoneAfterMs: GONE_AFTER_MS,
    });
    process.env.STEPWISE_BASE_URL = executor.url;
  }, 60_000);

  afterAll(async () => {
    for (const server of servers) await new Promise<void>((resolve) => server.close(() => resolve()));
    await executor?.close();
    await cleanup?.();
  });

  /** Deploys a version behind the alias (the alias points at it) and registers it, as a deploy hook does. */
  const release = async (version: string, at: Awaited<ReturnType<typeof alias>>) => {
    const deployment = await deploy(version, at.url);
    servers.push(deployment.server);
    at.target.url = deployment.url;
    expect((await fetch(deployment.url, { method: "PUT" })).status).toBe(200);
    return deployment;
  };
  const flowView = async () => (await api<{ functions: FunctionView[] }>("/api/functions")).functions.find((fn) => fn.id === "deploys-flow")!;

  it("runs finish on the version they started on; new runs start on the new one; a deleted deployment's runs move", async () => {
    const front = await alias();
    servers.push(front.server);
    const v1 = await release("v1", front);

    // Two runs start on version 1 and sleep; one wakes while version 1 still serves, one after it is deleted.
    const early = await runOf(await send({ n: 1, napMs: 1_500 }));
    const late = await runOf(await send({ n: 2, napMs: 4_000 }));
    expect([early.appVersion, late.appVersion]).toEqual(["v1", "v1"]);
    await eventually("both runs asleep", async () => ((await api<RunView>(`/api/runs/${late.id}`)).status === "sleeping" && (await api<RunView>(`/api/runs/${early.id}`)).status === "sleeping" ? true : undefined));

    // Version 2 deploys: the alias points at it, and new runs start on it.
    const v2 = await release("v2", front);
    const fresh = await runOf(await send({ n: 3, napMs: 10 }));
    expect(fresh.appVersion).toBe("v2");
    expect((await ended(fresh.id)).output).toBe("one from v2, two from v2");
    expect(v1.state.invoked).not.toContain(fresh.id);

    // The run in flight finishes on version 1's deployment, though the alias serves version 2.
    expect((await ended(early.id)).output).toBe("one from v1, two from v1");
    expect(v2.state.invoked).not.toContain(early.id);

    const flow = await flowView();
    expect(flow.appVersion).toBe("v2");
    expect(flow.deployments?.map((d) => [d.version, d.url])).toEqual([
      ["v1", v1.url],
      ["v2", v2.url],
    ]);

    // Version 1's deployment is deleted: its last run moves to the app's URL, keeping the step it ran on 1.
    v1.state.mode = "deleted";
    const moved = await ended(late.id);
    expect(moved.status).toBe("completed");
    expect(moved.output).toBe("one from v1, two from v2");
    expect(log.lines.join("\n")).toMatch(/app deploys: the deployment of version v1 at .* is gone \(answered HTTP 404\); its runs move to/);
    expect((await flowView()).deployments?.map((d) => d.version)).toEqual(["v2"]);
  }, 60_000);

  it("a deployment that keeps refusing connections is gone too; registering that version again brings it back", async () => {
    const front = await alias();
    servers.push(front.server);
    const v3 = await deploy("v3", front.url);
    front.target.url = v3.url;
    expect((await fetch(v3.url, { method: "PUT" })).status).toBe(200);
    const run = await runOf(await send({ n: 4, napMs: 1_500 }));
    expect(run.appVersion).toBe("v3");
    await release("v4", front);
    // Version 3's server goes away for good: its port refuses connections.
    await shutDown(v3.server);
    const moved = await ended(run.id);
    expect(moved.output).toBe("one from v3, two from v4");
    const lines = log.lines.join("\n");
    expect(lines).toMatch(new RegExp(`run ${run.id}: the deployment of version v3 at .* could not be reached \\(ECONNREFUSED\\); trying it there again`));
    expect(lines).toMatch(/the deployment of version v3 at .* is gone \(could not be reached \(ECONNREFUSED\)\)/);
    // Not before it had refused for the whole window: a restart takes less.
    const endedAt = Date.parse((await api<RunView>(`/api/runs/${run.id}`)).endedAt!);
    expect(endedAt - Date.parse(run.startedAt)).toBeGreaterThanOrEqual(1_500 + GONE_AFTER_MS);

    // Version 3 deployed again (a rollback) is live again, at its new URL.
    const again = await release("v3", front);
    const flow = await flowView();
    expect(flow.appVersion).toBe("v3");
    expect(flow.deployments?.find((d) => d.version === "v3")?.url).toBe(again.url);
  }, 60_000);

  it("a deployment that refuses connections while it restarts keeps its runs: none move to other code", async () => {
    const front = await alias();
    servers.push(front.server);
    const v9 = await release("v9", front);
    const run = await runOf(await send({ n: 9, napMs: 1_500 }));
    expect(run.appVersion).toBe("v9");
    await eventually("the run asleep", async () => ((await api<RunView>(`/api/runs/${run.id}`)).status === "sleeping" ? true : undefined));
    // Version 9's server restarts: while it is down (a second, less than the suite's window of
    // four), its port refuses the run's wake-up, again and again.
    await shutDown(v9.server);
    await release("v10", front);
    await eventually("the end of the nap", async () => ((await api<RunView>(`/api/runs/${run.id}`)).status !== "sleeping" ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    servers.push((await v9.restart()).server);
    const done = await ended(run.id);
    expect(done.output).toBe("one from v9, two from v9");
    expect(log.lines.filter((line) => line.includes(`run ${run.id}: the deployment of version v9`)).length).toBeGreaterThanOrEqual(1);
    expect((await flowView()).deployments?.map((d) => d.version)).toContain("v9");
  }, 60_000);

  it("without a deployment URL nothing is pinned: a run goes wherever the app's URL is now", async () => {
    const v5 = await deploy("v5");
    servers.push(v5.server);
    expect((await fetch(v5.url, { method: "PUT" })).status).toBe(200);
    const run = await runOf(await send({ n: 5, napMs: 1_500 }));
    expect(run.appVersion).toBe("v5");
    // The app moves to another URL; the old one now redirects (the executor follows no redirect).
    const v6 = await deploy("v6");
    servers.push(v6.server);
    expect((await fetch(v6.url, { method: "PUT" })).status).toBe(200);
    v5.state.mode = "moved";
    expect((await ended(run.id)).output).toBe("one from v5, two from v6");
  }, 60_000);

  it("a run moved to code whose steps changed fails with the same readable non-determinism error as before", async () => {
    const front = await alias();
    servers.push(front.server);
    const v7 = await release("v7", front);
    const run = await runOf(await send({ n: 7, napMs: 1_000 }));
    // Version 8 renamed the first step, and version 7's deployment is deleted before the run wakes.
    const v8 = await deploy("v8", front.url, "first");
    servers.push(v8.server);
    front.target.url = v8.url;
    expect((await fetch(v8.url, { method: "PUT" })).status).toBe(200);
    v7.state.mode = "deleted";
    const failed = await ended(run.id);
    expect(failed.status).toBe("failed");
    expect(failed.error).toMatchObject({ name: "NonDeterminismError", message: expect.stringContaining('was "one" (run) in the stored run, but the function now calls "first"') });
  }, 60_000);

  it("an older SDK at a version's own deployment gets every field there, while the current one keeps the compact form", async () => {
    const front = await alias();
    servers.push(front.server);
    const v3 = await release("v3", front);
    const old = await runOf(await send({ n: 31, napMs: 1_500 }));
    // Version 4 deploys; version 3's deployment is rolled back to an SDK older than its registration.
    const v4 = await release("v4", front);
    v3.state.mode = "older-sdk";
    expect((await ended(old.id)).output).toBe("one from v3, two from v3");
    // Its invocation with steps was refused in the compact form, then read in full.
    expect(v3.state.forms.filter((form) => form !== "none")).toEqual(["compact", "full"]);
    const fresh = await runOf(await send({ n: 41, napMs: 10 }));
    expect((await ended(fresh.id)).output).toBe("one from v4, two from v4");
    // The refusal was version 3's deployment's: version 4's still gets the compact form.
    expect(v4.state.forms.filter((form) => form !== "none")).toEqual(["compact"]);
    const warnings = log.lines.filter((line) => line.includes("compact form"));
    expect(warnings).toEqual([expect.stringContaining(`app deploys: ${v3.url} refused stored steps in the compact form (HTTP 400: Body is not a Stepwise invocation`)]);
  }, 60_000);

  it("a registration naming a deployment URL the executor must never call is refused, and changes nothing", async () => {
    const before = await flowView();
    for (const deploymentUrl of ["http://169.254.169.254/latest/meta-data", "file:///etc/passwd"]) {
      const client = new Stepwise({ id: "deploys", dev: true });
      const fn = client.createFunction({ id: "flow", triggers: [{ event: "deploys/started" }] }, async () => "never");
      const handler = serve({ client, functions: [fn], appVersion: "evil", serveUrl: "http://127.0.0.1:9/api/durable", deploymentUrl });
      const app = new Hono();
      app.all("/api/durable", handler);
      const answer = await app.request("http://127.0.0.1:9/api/durable", { method: "PUT" });
      expect(answer.status).toBe(400);
      expect(((await answer.json()) as { error: string }).error).toMatch(/deployment URL/);
    }
    expect(await flowView()).toEqual(before);
  });
});
