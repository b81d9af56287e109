import { describe, expect, it } from "vitest";
import { StepIdAllocator } from "../src/step-ids.ts";

describe("StepIdAllocator", () => {
  it("uses the name, then counts repeats from :1", () => {
    const ids = new StepIdAllocator();
    expect([ids.allocate("fetch"), ids.allocate("fetch"), ids.allocate("save"), ids.allocate("fetch")]).toEqual([
      "fetch",
      "fetch:1",
      "save",
      "fetch:2",
    ]);
  });

  it("skips an ID already taken by a step named like a counter", () => {
    const ids = new StepIdAllocator();
    expect(ids.allocate("a:1")).toBe("a:1");
    expect(ids.allocate("a")).toBe("a");
    expect(ids.allocate("a")).toBe("a:2");
    expect(ids.allocate("a:2")).toBe("a:2:1");
    expect(ids.allocate("a")).toBe("a:3");
  });
});
