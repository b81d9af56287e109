import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
// @ts-expect-error: a plain script, with no types of its own
import { dashboardAssets } from "../../../scripts/gen-dashboard.mjs";

it("the served pages are built from packages/dashboard/ui as it is (run `npm run gen:dashboard` after editing it)", async () => {
  expect(readFileSync(new URL("../src/assets.ts", import.meta.url), "utf8")).toBe(await dashboardAssets());
});
