/** Where a run is invoked under versioned deploys, and what the SDK there is sent. */
import { APP_FEATURES } from "@stepwise/protocol";
import { describe, expect, it } from "vitest";
import { deploymentOf } from "../src/deployments.ts";
import type { AppRecord } from "../src/records.ts";
import { outputBudget } from "../src/runtime/request-steps.ts";

const syncedAt = new Date("2026-12-05T12:00:00Z");
const app: AppRecord = {
  id: "shop",
  url: "https://shop.example.com/api/durable",
  sdk: "stepwise-js/0.2.0",
  features: [APP_FEATURES.outputsBySize],
  syncedAt,
  version: "v2",
  deployments: [
    // An older SDK, which reads every output inline.
    { version: "v1", url: "https://shop-v1.example.com/api/durable", syncedAt, features: [], gone: false },
    { version: "v2", url: "https://shop-v2.example.com/api/durable", syncedAt, features: [APP_FEATURES.outputsBySize], gone: false },
    // No deployment URL: the app's URL serves it, wherever that is now.
    { version: "v0", syncedAt, features: [], gone: false },
    { version: "v-gone", url: "https://shop-gone.example.com/api/durable", syncedAt, features: [], gone: true },
  ],
};

describe("deploymentOf", () => {
  it("a run of an earlier version goes to that version's deployment, with what its SDK understands", () => {
    const target = deploymentOf(app, { appVersion: "v1" });
    expect(target).toEqual({ id: "shop", url: "https://shop-v1.example.com/api/durable", features: [], pinned: true });
    expect(outputBudget(target, { maxRequestOutputBytes: 1_000 } as never)).toBe(Infinity);
  });

  it("a run of the current version goes to its own deployment too: an alias may already serve the next one", () => {
    expect(deploymentOf(app, { appVersion: "v2" })).toMatchObject({ url: "https://shop-v2.example.com/api/durable", pinned: true });
  });

  it("a run with no version, of a version without its own URL, or whose deployment is gone, goes to the app's URL", () => {
    for (const appVersion of [undefined, "v0", "v-gone"]) {
      expect(deploymentOf(app, { appVersion })).toEqual({ id: "shop", url: app.url, features: app.features, pinned: false });
    }
  });

  it("a version this copy of the app does not know is said so: the caller reloads the apps", () => {
    expect(deploymentOf(app, { appVersion: "v3" })).toMatchObject({ url: app.url, unknown: true });
  });
});
