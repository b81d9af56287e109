/**
 * The stored steps of an invocation as the SDK parses them: in full (from an older executor, or
 * for an app that did not declare the compact form) or compact, every field filled in either way,
 * and a step that is neither refused with the field that is wrong.
 */
import { describe, expect, it } from "vitest";
import { InvokeRequestSchema, issuesText, PROTOCOL_VERSION } from "../src/index.ts";

const request = (steps: unknown[]) => ({ version: PROTOCOL_VERSION, run: { id: "r", appId: "app", functionId: "f", attempt: 0 }, event: { id: "e", name: "n", data: {}, ts: 0 }, events: [], steps });

describe("stored steps on the wire", () => {
  it("reads the full form as it is", () => {
    const full = [
      { id: "a", name: "a", kind: "run", position: 0, status: "completed", output: 1 },
      { id: "b", name: "b", kind: "sleep", position: 1, status: "pending" },
    ];
    expect(InvokeRequestSchema.parse(request(full)).steps).toEqual(full);
  });

  it("fills in what the compact form leaves out", () => {
    const compact = [{ id: "a", output: 1 }, { id: "a:1", name: "a", output: 2 }, { id: "nap", kind: "sleep", output: null }, { id: "x", status: "failed", error: { name: "Error", message: "no" } }, { id: "y", status: "pending", position: 7 }];
    expect(InvokeRequestSchema.parse(request(compact)).steps).toEqual([
      { id: "a", name: "a", kind: "run", position: 0, status: "completed", output: 1 },
      { id: "a:1", name: "a", kind: "run", position: 1, status: "completed", output: 2 },
      { id: "nap", name: "nap", kind: "sleep", position: 2, status: "completed", output: null },
      { id: "x", name: "x", kind: "run", position: 3, status: "failed", error: { name: "Error", message: "no" } },
      { id: "y", name: "y", kind: "run", position: 7, status: "pending" },
    ]);
  });

  it("refuses a step that is not one, naming the field", () => {
    const problems = (step: unknown) => {
      const parsed = InvokeRequestSchema.safeParse(request([step]));
      return parsed.success ? "accepted" : issuesText(parsed.error.issues, "body");
    };
    expect(problems({ output: 1 })).toMatch(/steps\.0\.id/);
    expect(problems({ id: "a", kind: "nap" })).toMatch(/steps\.0\.kind/);
    expect(problems({ id: "a", status: "done" })).toMatch(/steps\.0\.status/);
    expect(problems({ id: "a", position: -1 })).toMatch(/steps\.0\.position/);
    expect(problems({ id: "a", name: 5 })).toMatch(/steps\.0\.name/);
  });
});
