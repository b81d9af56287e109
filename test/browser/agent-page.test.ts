/**
 * The example agent's page in a real browser: a person asks, watches the run's steps and
 * published progress arrive over the live stream (the SDK's realtime client, bundled by the
 * example, reading with a stream token from another origin), approves the findings by posting
 * to the run's callback URL, and sees the report. The example's own app process serves the
 * page; the executor runs its functions against the local test model.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { functions, stepwise } from "@stepwise/example-agent";
import { startTestModel, type TestModel } from "@stepwise/example-agent/test-model";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/net.ts";
import { startStack, type Stack } from "../support/stack.ts";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser", process.env.STEPWISE_CHROMIUM].find((path) => path && existsSync(path));
const available = !!CHROMIUM || !!process.env.CI;

describe.skipIf(!available)("the example agent's page", () => {
  let model: TestModel;
  let stack: Stack;
  let app: ChildProcess;
  let pageUrl: string;
  const appOutput: string[] = [];
  let browser: Browser;

  beforeAll(async () => {
    model = await startTestModel({ delayMs: 50 });
    // The functions run in this process (the stack's app), in dev mode as the example's
    // README runs them, and find the test model here.
    process.env.AGENT_TEST_MODEL_URL = model.url;
    process.env.STEPWISE_DEV = "1";
    stack = await startStack({ store: "pglite", client: stepwise, functions });
    const port = await freePort();
    pageUrl = `http://127.0.0.1:${port}`;
    app = spawn(process.execPath, ["--import", "tsx", "apps/examples/agent/src/main.ts"], {
      env: { ...(process.env as Record<string, string>), PORT: String(port), STEPWISE_DEV: "1", STEPWISE_BASE_URL: stack.executor.url, AGENT_TEST_MODEL_URL: model.url },
      stdio: ["ignore", "pipe", "pipe"],
    });
    for (const stream of [app.stdout!, app.stderr!]) stream.on("data", (chunk) => appOutput.push(String(chunk)));
    const deadline = Date.now() + 30_000;
    while (!(await fetch(pageUrl).then((r) => r.ok, () => false))) {
      if (Date.now() > deadline || app.exitCode !== null) throw new Error(`the agent app did not start:\n${appOutput.join("")}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    browser = await chromium.launch({ executablePath: CHROMIUM ?? "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    app?.kill("SIGKILL");
    await stack?.close();
    await model?.close();
    delete process.env.AGENT_TEST_MODEL_URL;
    delete process.env.STEPWISE_DEV;
  });

  it("asks, shows the run's progress live, takes the approval, and shows the report", { timeout: 60_000 }, async () => {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("pageerror", (error) => problems.push(error.message));
    await page.goto(pageUrl);
    await page.fill("input[name=topic]", "tidal power");
    await page.click("#ask button");
    // The findings arrive as a published message: the person is asked.
    await page.waitForSelector("#approval:not([hidden])", { timeout: 30_000 });
    expect(await page.locator("#findings li").allTextContents()).toEqual(["tidal power history", "tidal power today", "tidal power open questions"].map((query) => `A source about ${query}`));
    await page.click("#approval button[data-approved=true]");
    await page.waitForFunction(() => document.getElementById("state")?.textContent?.includes("completed"), undefined, { timeout: 30_000 });
    expect(await page.textContent("#state")).toMatch(/^run \w+ completed: Report on tidal power: 3 findings/);
    const log = (await page.textContent("#log")) ?? "";
    expect(log).toContain('progress: {"searched":3,"of":3,"query":"tidal power open questions"}');
    expect(log).toMatch(/step search-1: completed/);
    expect(log).toContain('status: "writing the report"');
    expect(problems, appOutput.join("")).toEqual([]);
    // The approval went straight from the page to the executor's callback URL.
    const runId = /^run (\w+)/.exec((await page.textContent("#state")) ?? "")![1]!;
    const run = await stack.getRun(runId);
    expect(JSON.stringify(run.steps.find((step) => step.id === "approval")?.output)).toContain('"body":"approved=true"');
  });
});
