import { describe, expect, it } from "vitest";
import { CompactFormRefusals, DEFAULT_FULL_FORM_FOR_MS } from "../src/runtime/compact-refusals.ts";
import type { DeploymentTarget } from "../src/deployments.ts";
import type { AppRecord } from "../src/records.ts";

const app: AppRecord = { id: "shop", url: "https://shop.example/api/durable", sdk: "stepwise-ts", features: ["compact-steps"], syncedAt: new Date(0) };
const current: DeploymentTarget = { id: "shop", url: app.url, features: app.features, pinned: false };
const pinned: DeploymentTarget = { id: "shop", url: "https://v2.shop.example/api/durable?token=secret", features: app.features, pinned: true };
const REASON = "steps.0.name: expected string";

function setUp(forMs?: number) {
  let now = 1_000;
  const warnings: string[] = [];
  const refusals = new CompactFormRefusals({ info: () => {}, warn: (line) => warnings.push(line), error: () => {} }, forMs, () => now);
  return { refusals, warnings, pass: (ms: number) => (now += ms) };
}

describe("URLs that refused the compact form", () => {
  it("get every field from the refusal on, for five minutes unless told otherwise, then the compact form again", () => {
    const { refusals, pass } = setUp();
    expect(refusals.sendsInFull(app, current)).toBe(false);
    refusals.refused(app, current);
    // At once: the invocation in full may run for minutes, and the ones beside it must not go twice meanwhile.
    expect(refusals.sendsInFull(app, current)).toBe(true);
    // Another URL of the same app (a version's own deployment) is not the one that refused.
    expect(refusals.sendsInFull(app, pinned)).toBe(false);
    refusals.fullForm(app, current, true, REASON);
    pass(DEFAULT_FULL_FORM_FOR_MS - 1);
    expect(refusals.sendsInFull(app, current)).toBe(true);
    pass(1);
    expect(refusals.sendsInFull(app, current)).toBe(false);

    const short = setUp(1_000);
    short.refusals.refused(app, current);
    short.pass(1_000);
    expect(short.refusals.sendsInFull(app, current)).toBe(false);
  });

  it("are forgotten when the full form is refused too: that 400 is the app's own answer", () => {
    const { refusals, warnings } = setUp();
    refusals.refused(app, current);
    refusals.fullForm(app, current, false, "unknown protocol version");
    expect(refusals.sendsInFull(app, current)).toBe(false);
    expect(warnings).toEqual([]);
  });

  it("say so once a stretch, when the full form is read, naming the app, the URL without its query and what the instance said", () => {
    const { refusals, warnings, pass } = setUp();
    // Invocations in flight together are all refused, and all read in full.
    for (let i = 0; i < 5; i++) refusals.refused(app, pinned);
    expect(warnings).toEqual([]);
    for (let i = 0; i < 5; i++) refusals.fullForm(app, pinned, true, REASON);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`app shop: https://v2.shop.example/api/durable?… refused stored steps in the compact form (HTTP 400: ${REASON}) and read them in full`);
    expect(warnings[0]).not.toContain("secret");
    expect(warnings[0]).toContain("go in full for 5m 0s; update the SDK on every instance");
    // A later refusal of the full form does not undo what was seen.
    refusals.fullForm(app, pinned, false, "");
    expect(refusals.sendsInFull(app, pinned)).toBe(true);
    pass(DEFAULT_FULL_FORM_FOR_MS);
    refusals.refused(app, pinned);
    refusals.fullForm(app, pinned, true, "");
    expect(warnings).toHaveLength(2);
    expect(warnings[1]).toContain("(HTTP 400: no reason given)");
  });
});
