import { describe, expect, it } from "vitest";
import { liveStatus } from "../src/progress.ts";
import type { StepRecord } from "../src/records.ts";

const step = (status: StepRecord["status"]): StepRecord => ({
  runId: "r",
  id: status,
  name: status,
  kind: "run",
  position: 0,
  status,
  attempts: 0,
  startedAt: new Date(),
});

describe("liveStatus", () => {
  it("is running when nothing is in flight or a step is planned or retrying", () => {
    expect(liveStatus([step("completed")])).toBe("running");
    expect(liveStatus([step("sleeping"), step("planned")])).toBe("running");
    expect(liveStatus([step("retrying")])).toBe("running");
  });

  it("is waiting for an event or a child run before sleeping", () => {
    expect(liveStatus([step("sleeping"), step("waiting")])).toBe("waiting");
    expect(liveStatus([step("invoking")])).toBe("waiting");
    expect(liveStatus([step("sleeping"), step("completed")])).toBe("sleeping");
  });
});
