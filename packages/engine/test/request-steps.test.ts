/**
 * The steps an invocation carries: in full for an SDK that never declared the compact form, else
 * each without the fields that hold their usual value; outputs inlined within the byte budget
 * either way, the rest sent by size.
 */
import { InvokeRequestSchema, PROTOCOL_VERSION } from "@stepwise/protocol";
import { describe, expect, it } from "vitest";
import type { StepRecord } from "../src/records.ts";
import { requestSteps } from "../src/runtime/request-steps.ts";

const startedAt = new Date(0);
const step = (fields: Partial<StepRecord> & Pick<StepRecord, "id" | "position" | "status">): StepRecord => ({ runId: "r", name: fields.id, kind: "run", attempts: 1, startedAt, ...fields });

const steps: StepRecord[] = [
  step({ id: "a", position: 0, status: "completed", output: { n: 1 } }),
  step({ id: "a:1", name: "a", position: 1, status: "completed", output: "x".repeat(100) }),
  step({ id: "nap", kind: "sleep", position: 2, status: "completed" }),
  step({ id: "refused", position: 3, status: "failed", error: { name: "Error", message: "no" } }),
  // Its output was not read with the run: larger than any budget.
  step({ id: "big", position: 4, status: "completed", outputBytes: 5_000_000 }),
  step({ id: "wait", kind: "wait", position: 5, status: "waiting" }),
];

/** What the SDK reads from `sent`: the request parsed as it parses it. */
const parsed = (sent: unknown[]) =>
  InvokeRequestSchema.parse({ version: PROTOCOL_VERSION, run: { id: "r", appId: "app", functionId: "f", attempt: 0 }, event: { id: "e", name: "n", data: {}, ts: 0 }, events: [], steps: sent }).steps;

describe("requestSteps", () => {
  it("leaves out of the compact form only what the SDK fills in again", () => {
    const compact = requestSteps(steps, 50, true);
    expect(compact).toEqual([
      { id: "a", output: { n: 1 } },
      // Over what was left of the budget after "a": by size.
      { id: "a:1", name: "a", outputBytes: 102 },
      { id: "nap", kind: "sleep", output: null },
      { id: "refused", status: "failed", error: { name: "Error", message: "no" } },
      { id: "big", outputBytes: 5_000_000 },
      { id: "wait", kind: "wait", status: "pending" },
    ]);
    expect(parsed(compact)).toEqual(parsed(requestSteps(steps, 50, false)));
  });

  it("sends every field to an SDK that did not declare the compact form", () => {
    const full = requestSteps(steps, 50, false);
    for (const sent of full) expect(Object.keys(sent)).toEqual(expect.arrayContaining(["id", "name", "kind", "position", "status"]));
    expect(full[1]).toEqual({ id: "a:1", name: "a", kind: "run", position: 1, status: "completed", outputBytes: 102 });
  });

  it("says where a step is when it is not at its index", () => {
    // A targeted invocation leaves its own step out of the list.
    const withoutTarget = steps.filter((s) => s.id !== "nap");
    const compact = requestSteps(withoutTarget, Infinity, true);
    expect(compact.map((sent) => sent.position)).toEqual([undefined, undefined, 3, 4, 5]);
    expect(parsed(compact).map((s) => s.position)).toEqual([0, 1, 3, 4, 5]);
  });
});
