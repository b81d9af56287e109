import { expect, it } from "vitest";
import { newId } from "../src/ids.ts";

it("makes unique, time-ordered 26-character IDs", () => {
  const ids = Array.from({ length: 1_000 }, (_, i) => newId(1_700_000_000_000 + i));
  expect(new Set(ids).size).toBe(1_000);
  expect([...ids].sort()).toEqual(ids);
  for (const id of ids) expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
});
