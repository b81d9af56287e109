import { describe, expect, it } from "vitest";
import { CompactFormRefusals, FULL_FORM_FOR_MS } from "../src/runtime/compact-refusals.ts";
import type { DeploymentTarget } from "../src/deployments.ts";
import type { AppRecord } from "../src/records.ts";

const app: AppRecord = { id: "shop", url: "https://shop.example/api/durable", sdk: "stepwise-ts", features: ["compact-steps"], syncedAt: new Date(0) };
const current: DeploymentTarget = { id: "shop", url: app.url, features: app.features, pinned: false };
const pinned: DeploymentTarget = { id: "shop", url: "https://v2.shop.example/api/durable?token=secret", features: app.features, pinned: true };

function setUp() {
  let now = 1_000;
  const warnings: string[] = [];
  const refusals = new CompactFormRefusals({ info: () => {}, warn: (line) => warnings.push(line), error: () => {} }, () => now);
  return { refusals, warnings, pass: (ms: number) => (now += ms) };
}

describe("URLs that refused the compact form", () => {
  it("get every field for a while after a refusal, then the compact form again", () => {
    const { refusals, pass } = setUp();
    expect(refusals.sendsInFull(app, current)).toBe(false);
    refusals.refused(app, current, "steps.0.name: expected string");
    expect(refusals.sendsInFull(app, current)).toBe(true);
    // Another URL of the same app (a version's own deployment) is not the one that refused.
    expect(refusals.sendsInFull(app, pinned)).toBe(false);
    pass(FULL_FORM_FOR_MS - 1);
    expect(refusals.sendsInFull(app, current)).toBe(true);
    pass(1);
    expect(refusals.sendsInFull(app, current)).toBe(false);
  });

  it("say so once a stretch, naming the app, the URL without its query and what the instance said", () => {
    const { refusals, warnings, pass } = setUp();
    // Invocations in flight together are all refused.
    for (let i = 0; i < 5; i++) refusals.refused(app, pinned, "steps.0.name: expected string");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("app shop: https://v2.shop.example/api/durable?… refused stored steps in the compact form (HTTP 400: steps.0.name: expected string)");
    expect(warnings[0]).not.toContain("secret");
    expect(warnings[0]).toContain("update the SDK on every instance");
    pass(FULL_FORM_FOR_MS);
    refusals.refused(app, pinned, "");
    expect(warnings).toHaveLength(2);
    expect(warnings[1]).toContain("(HTTP 400: no reason given)");
  });
});
