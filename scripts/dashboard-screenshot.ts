/**
 * The README's picture of the dashboard: a dev executor and an app, one run of a few steps (a
 * retried one, a sleep, a wait that times out), its page in headless Chromium, saved as
 * docs/dashboard-run.png. `npx tsx scripts/dashboard-screenshot.ts` (needs Chromium).
 */
import { Stepwise } from "@stepwise/sdk";
import { chromium } from "playwright-core";
import { z } from "zod";
import { startStack } from "../test/support/stack.ts";

const client = new Stepwise({ id: "support", dev: true, schemas: { "ticket/opened": z.object({ id: z.string(), text: z.string() }) } });
let tries = 0;
const triage = client.createFunction({ id: "triage-ticket", triggers: [{ event: "ticket/opened" }] }, async ({ event, step }) => {
  const ticket = await step.run("load-ticket", () => ({ id: event.data.id, text: event.data.text }));
  const label = await step.run("classify-with-model", async () => {
    await new Promise((resolve) => setTimeout(resolve, 120));
    if (++tries < 2) throw new Error("429 from the model provider: rate limited");
    return { label: "billing", confidence: 0.93 };
  });
  await step.sleep("cool-down", 300);
  const approval = await step.waitForEvent("wait-for-approval", { event: "ticket/approved", timeout: 400 });
  return step.run("route-to-team", () => ({ ticket: ticket.id, team: label.label, approved: approval !== null }));
});

const stack = await startStack({ store: "pglite", client, functions: [triage], executor: { backoff: { initialMs: 150, maxMs: 150 } } });
const browser = await chromium.launch({ executablePath: process.env.STEPWISE_CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const [eventId] = await stack.send({ name: "ticket/opened", data: { id: "T-1042", text: "I was charged twice this month" } });
  const run = await stack.waitForRun(eventId!);
  const page = await browser.newPage({ viewport: { width: 1180, height: 760 }, deviceScaleFactor: 1 });
  await page.goto(`${stack.executor.url}/#/runs/${run.id}`);
  await page.locator(".waterfall .step").first().waitFor();
  await page.click('.step[data-step="classify-with-model"]');
  await page.screenshot({ path: "docs/dashboard-run.png", fullPage: true });
  console.log(`wrote docs/dashboard-run.png (run ${run.id}, ${run.status})`);
} finally {
  await browser.close();
  await stack.close();
}
