import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { SCHEMA_SQL } from "../src/schema.ts";

it("the embedded schema module matches schema.sql (run `npm run gen:schema` after editing it)", () => {
  expect(SCHEMA_SQL).toBe(readFileSync(new URL("../../../schema.sql", import.meta.url), "utf8"));
});
