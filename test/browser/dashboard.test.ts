/**
 * The dashboard in a real browser (Chromium from the system, driven by playwright-core,
 * headless): what an operator does there, each checked against the executor's own record.
 * `stepwise dev`'s open dashboard, then `stepwise start`'s, which needs signing in and refuses
 * changes without the session's CSRF token or from another site.
 */
import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { NonRetriableError, Stepwise } from "@stepwise/sdk";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startStack, type Stack } from "../support/stack.ts";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser", process.env.STEPWISE_CHROMIUM].find((path) => path && existsSync(path));
// Without Chromium the suite says so and skips, except in CI, where it must run (and fails).
const available = !!CHROMIUM || !!process.env.CI;
if (!available) console.warn("browser tests skipped: no Chromium (apt-get install chromium)");

const client = new Stepwise({
  id: "shop",
  dev: true,
  schemas: {
    "shop/order": z.object({ item: z.string() }),
    "shop/nap": z.object({ n: z.number() }),
    "shop/charge": z.object({ amount: z.number() }),
    "shop/draft": z.object({ topic: z.string() }),
    "shop/describe": z.object({ item: z.string() }),
  },
});
const code = { declineCards: true };
const order = client.createFunction({ id: "order", triggers: [{ event: "shop/order" }] }, async ({ event, step }) => {
  const reserved = await step.run("reserve", () => `reserved ${event.data.item}`);
  await step.sleep("settle", 50);
  return step.run("confirm", () => `${reserved}, confirmed`);
});
// A model call made by the app's own SDK, whose result reports its tokens.
const describeItem = client.createFunction({ id: "describe", triggers: [{ event: "shop/describe" }] }, async ({ event, step }) => {
  const written = await step.ai.wrap("write", (item: string) => ({ text: `a fine ${item}`, usage: { inputTokens: 1200, outputTokens: 34 }, response: { modelId: "local-writer" } }), event.data.item);
  return written.text;
});
const nap = client.createFunction({ id: "nap", triggers: [{ event: "shop/nap" }] }, async ({ step }) => {
  await step.sleep("long", "1h");
  return "rested";
});
const charge = client.createFunction({ id: "charge", triggers: [{ event: "shop/charge" }], retries: 0 }, async ({ event, step }) =>
  step.run("charge", () => {
    if (code.declineCards) throw new NonRetriableError("card declined");
    return { charged: event.data.amount };
  }),
);
const draft = client.createFunction({ id: "draft", triggers: [{ event: "shop/draft" }] }, async ({ event, step }) => {
  const outline = await step.run("outline", () => `outline of ${event.data.topic}`);
  return step.run("write", () => `article from "${outline}"`);
});

async function launch(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM ?? "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
}

describe.skipIf(!available)("the dashboard of stepwise dev", () => {
  let stack: Stack;
  let browser: Browser;
  let page: Page;
  const open = async (hash: string) => {
    await page.goto(`${stack.executor.url}/${hash}`);
  };

  beforeAll(async () => {
    stack = await startStack({ store: "pglite", client, functions: [order, nap, charge, draft, describeItem] });
    browser = await launch();
    page = await browser.newPage();
    page.on("dialog", (dialog) => void dialog.accept());
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  it("shows a run live in the list once an event is sent from the form, then its timeline", async () => {
    const list = await browser.newPage();
    await list.goto(`${stack.executor.url}/#/runs?function=shop-order`);
    await expect.poll(() => list.locator("table.runs tbody").textContent()).toContain("No runs match.");

    await open("#/events");
    await page.fill("input[name=name]", "shop/order");
    await page.fill("textarea[name=data]", '{ "item": "lamp" }');
    await page.click("form.send button[type=submit]");
    const sent = await page.locator(".sent").textContent({ timeout: 5_000 });
    const eventId = /event (\S+)/.exec(sent ?? "")![1]!;
    const run = await stack.waitForRun(eventId);

    // The list, opened before the event, shows the run without a reload, and its end.
    const row = list.locator(`tr[data-run="${run.id}"]`);
    await row.waitFor({ timeout: 5_000 });
    await expect.poll(() => row.locator("[data-status]").getAttribute("data-status")).toBe("completed");
    await list.close();

    await open(`#/runs/${run.id}`);
    await page.locator(".waterfall .step").first().waitFor();
    const steps = await page.locator(".waterfall .step").evaluateAll((rows) =>
      rows.map((row) => ({ id: row.getAttribute("data-step"), kind: row.querySelector(".kind")!.textContent, width: parseFloat((row.querySelector(".bar") as HTMLElement).style.width) })),
    );
    expect(steps.map((step) => [step.id, step.kind])).toEqual([
      ["reserve", "run"],
      ["settle", "sleep"],
      ["confirm", "run"],
    ]);
    for (const step of steps) expect(step.width).toBeGreaterThan(0);
    // The sleep of 50 ms is the longest bar of the three.
    expect(steps[1]!.width).toBeGreaterThan(steps[0]!.width);
    await page.click('.step[data-step="confirm"]');
    await expect.poll(() => page.locator(".step-detail").textContent()).toContain('"reserved lamp, confirmed"');
    expect(await page.locator(".trigger").textContent()).toContain('"item": "lamp"');
  });

  it("shows the tokens a model call spent, on its step and for the run", async () => {
    const [eventId] = await stack.send({ name: "shop/describe", data: { item: "lamp" } });
    const run = await stack.waitForRun(eventId!);
    await open(`#/runs/${run.id}`);
    await page.locator('.waterfall .step[data-step="write"]').waitFor();
    expect(await page.locator('.step[data-step="write"] .took').textContent()).toContain("1,200 in / 34 out tokens");
    expect(await page.locator(".run-header").textContent()).toContain("1,200 in / 34 out tokens");
    await page.click('.step[data-step="write"]');
    await expect.poll(() => page.locator(".step-detail").textContent()).toContain("(local-writer)");
  });

  it("refuses an event whose data is not JSON, and shows the executor's own refusal", async () => {
    await open("#/events");
    await page.fill("input[name=name]", "shop/order");
    await page.fill("textarea[name=data]", "{ item: lamp }");
    await page.click("form.send button[type=submit]");
    await expect.poll(() => page.locator("form.send .error").textContent()).toMatch(/The data is not JSON/);
    await page.fill("textarea[name=data]", '{ "item": 42 }');
    await page.fill("input[name=name]", "");
    await page.fill("input[name=name]", " ");
    await page.click("form.send button[type=submit]");
    await expect.poll(() => page.locator("form.send .error").textContent()).toMatch(/name/i);
  });

  it("cancels a sleeping run, and pauses and resumes another", async () => {
    const [first, second] = await stack.send([
      { name: "shop/nap", data: { n: 1 } },
      { name: "shop/nap", data: { n: 2 } },
    ]);
    const sleeping = await stack.waitForRun(first!, { status: "sleeping" });
    await open(`#/runs/${sleeping.id}`);
    await page.click(".actions button:text('Cancel')");
    await expect.poll(async () => (await stack.getRun(sleeping.id)).status).toBe("cancelled");
    await expect.poll(() => page.locator(".run-header [data-status]").getAttribute("data-status")).toBe("cancelled");

    const other = await stack.waitForRun(second!, { status: "sleeping" });
    await open(`#/runs/${other.id}`);
    await page.click(".actions button:text('Pause')");
    await expect.poll(async () => (await stack.getRun(other.id)).paused?.by).toBe("operator");
    await expect.poll(() => page.locator(".run-header").textContent()).toContain("paused");
    await page.click(".actions button:text('Resume')");
    await expect.poll(async () => (await stack.getRun(other.id)).paused).toBeUndefined();
    expect((await stack.getRun(other.id)).status).toBe("sleeping");
  });

  it("replays a failed run once the code is fixed", async () => {
    code.declineCards = true;
    const [eventId] = await stack.send({ name: "shop/charge", data: { amount: 30 } });
    const failed = await stack.waitForRun(eventId!);
    expect(failed.status).toBe("failed");
    await open(`#/runs/${failed.id}`);
    await expect.poll(() => page.locator(".run-header").textContent()).toContain("card declined");
    code.declineCards = false;
    await page.click(".actions button:text('Replay')");
    await page.waitForURL((url) => url.hash.startsWith("#/runs/") && !url.hash.includes(failed.id));
    const replayId = decodeURIComponent(new URL(page.url()).hash.slice("#/runs/".length));
    await expect.poll(async () => (await stack.getRun(replayId)).status).toBe("completed");
    expect(await stack.getRun(replayId)).toMatchObject({ replayOf: failed.id, output: { charged: 30 } });
    await expect.poll(() => page.locator(".run-header").textContent()).toContain(`Replay of ${failed.id}`);
  });

  it("reruns from a step with an edited output", async () => {
    const [eventId] = await stack.send({ name: "shop/draft", data: { topic: "tea" } });
    const first = await stack.waitForRun(eventId!);
    await open(`#/runs/${first.id}`);
    await page.locator("form.rerun").waitFor();
    await page.selectOption("form.rerun select[name=fromStep]", "outline");
    await page.check("form.rerun input[name=replace]");
    await page.fill("form.rerun textarea[name=output]", '"a better outline"');
    await page.click("form.rerun button[type=submit]");
    await page.waitForURL((url) => url.hash.startsWith("#/runs/") && !url.hash.includes(first.id));
    const rerunId = decodeURIComponent(new URL(page.url()).hash.slice("#/runs/".length));
    await expect.poll(async () => (await stack.getRun(rerunId)).status).toBe("completed");
    expect(await stack.getRun(rerunId)).toMatchObject({ rerunFrom: "outline", output: 'article from "a better outline"' });
  });

  it("cancels every run a filtered list selects", async () => {
    const ids = await stack.send(Array.from({ length: 4 }, (_, n) => ({ name: "shop/nap", data: { n: 10 + n } })));
    const runs = await Promise.all(ids.map((id) => stack.waitForRun(id, { status: "sleeping" })));
    const [other] = await stack.send({ name: "shop/draft", data: { topic: "untouched" } });
    await open("#/runs");
    await page.selectOption(".filters select[name=function]", "shop-nap");
    await page.check(".filters input[value=sleeping]");
    await page.click(".filters button[type=submit]");
    await page.waitForURL((url) => url.hash.includes("status=sleeping"));
    await page.click(".bulk button:text('Cancel all matching')");
    await expect.poll(() => page.locator(".bulk .progress").textContent()).toMatch(/Done: cancelled \d+ run\(s\)\./);
    for (const run of runs) expect((await stack.getRun(run.id)).status).toBe("cancelled");
    expect((await stack.waitForRun(other!)).status).toBe("completed");
  });

  it("pauses a function, holds its new runs, and runs them when it resumes", async () => {
    await open("#/functions");
    const card = page.locator('article[data-function="shop-order"]');
    await card.locator("button:text('Pause')").click();
    await expect.poll(() => card.textContent()).toContain("paused");
    const [eventId] = await stack.send({ name: "shop/order", data: { item: "chair" } });
    const held = await stack.waitForRun(eventId!, { status: "queued" });
    expect(held.paused?.by).toBe("function");
    await card.locator("button:text('Resume and run held runs')").click();
    await expect.poll(() => page.locator(".progress").textContent()).toContain("1 held run(s) started");
    expect((await stack.waitForRun(eventId!, { status: "completed" })).output).toBe("reserved chair, confirmed");
  });
});

describe.skipIf(!available)("the dashboard of stepwise start", () => {
  let stack: Stack;
  let browser: Browser;
  let elsewhere: Server;
  let elsewhereUrl: string;
  const keyed = new Stepwise({ id: "shop", dev: false, signingKey: "signing-key", schemas: { "shop/nap": z.object({ n: z.number() }) } });
  const keyedNap = keyed.createFunction({ id: "nap", triggers: [{ event: "shop/nap" }] }, async ({ step }) => step.sleep("long", "1h"));

  beforeAll(async () => {
    stack = await startStack({
      store: "pglite",
      client: keyed,
      functions: [keyedNap],
      executor: { dev: false, signingKey: "signing-key", eventKey: "event-key", apiKey: "api-key", dashboardKey: "the-dashboard-key" },
    });
    browser = await launch();
    // Another site, whose page posts a form to the executor.
    elsewhere = createServer((_, response) => {
      response.setHeader("content-type", "text/html");
      response.end(`<form id="f" method="POST" action="${stack.executor.url}/api/runs/cancel?status=sleeping"></form><script>document.getElementById("f").submit()</script>`);
    });
    await new Promise<void>((resolve) => elsewhere.listen(0, "127.0.0.1", resolve));
    elsewhereUrl = `http://localhost:${(elsewhere.address() as { port: number }).port}/`;
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => elsewhere?.close(resolve));
    await stack?.close();
  });

  it("asks for the dashboard key, refuses a wrong one, and signs in with the right one", async () => {
    const page = await browser.newPage();
    await page.goto(stack.executor.url);
    await page.locator("form.sign-in").waitFor();
    // Nothing of the API answers without the session.
    expect((await page.evaluate(() => fetch("/api/runs").then((r) => r.status)))).toBe(401);
    await page.fill("input[name=key]", "not-the-key");
    await page.click("form.sign-in button");
    await expect.poll(() => page.locator("form.sign-in .error").textContent()).toBe("Wrong dashboard key");
    await page.fill("input[name=key]", "the-dashboard-key");
    await page.click("form.sign-in button");
    await page.locator("table.runs").waitFor();
    const cookies = await page.context().cookies();
    expect(cookies.find((cookie) => cookie.name === "stepwise_session")).toMatchObject({ httpOnly: true, sameSite: "Strict" });
    // No key is shown anywhere on the page.
    const html = await page.content();
    for (const key of ["the-dashboard-key", "api-key", "event-key", "signing-key"]) expect(html).not.toContain(key);
    await page.close();
  });

  it("refuses a change without the session's CSRF token, and a form posted from another site", async () => {
    const [eventId] = await stack.send({ name: "shop/nap", data: { n: 1 } });
    const sleeping = await stack.waitForRun(eventId!, { status: "sleeping" });
    const page = await browser.newPage();
    await page.goto(stack.executor.url);
    await page.fill("input[name=key]", "the-dashboard-key");
    await page.click("form.sign-in button");
    await page.locator("table.runs").waitFor();

    const withoutToken = await page.evaluate((id) => fetch(`/api/runs/${id}/cancel`, { method: "POST" }).then(async (r) => ({ status: r.status, body: await r.json() })), sleeping.id);
    expect(withoutToken.status).toBe(403);
    expect(withoutToken.body.error).toMatch(/needs its x-stepwise-csrf header/);

    // The cookie is SameSite=Strict and the request comes from another site: refused either way.
    const answer = page.waitForResponse((response) => response.url().includes("/api/runs/cancel"));
    await page.goto(elsewhereUrl);
    expect((await answer).status()).toBe(403);
    expect((await stack.getRun(sleeping.id)).status).toBe("sleeping");

    // With the token, through the dashboard's own button, it goes.
    await page.goto(`${stack.executor.url}/#/runs/${sleeping.id}`);
    await page.click(".actions button:text('Cancel')");
    await expect.poll(async () => (await stack.getRun(sleeping.id)).status).toBe("cancelled");
    await page.close();
  });

  it("is off without a dashboard key, saying how to turn it on", async () => {
    const closed = await startStack({
      store: "pglite",
      client: keyed,
      functions: [keyedNap],
      executor: { dev: false, signingKey: "signing-key", eventKey: "event-key", apiKey: "api-key" },
    });
    try {
      const response = await fetch(closed.executor.url);
      expect(response.status).toBe(404);
      expect(await response.text()).toMatch(/set STEPWISE_DASHBOARD_KEY/);
    } finally {
      await closed.close();
    }
  });
});
