import { describe, expect, it } from "vitest";
import { priorityOf } from "../src/unit/priority.ts";

const event = (data: unknown) => ({ id: "evt-1", name: "job/ranked", data, ts: 0 });

describe("a run's priority", () => {
  it("is the expression's seconds, clamped to 600 either way, saying so", () => {
    expect(priorityOf("event.data.plan == 'pro' ? 120 : 0", event({ plan: "pro" }))).toEqual({ seconds: 120 });
    expect(priorityOf("event.data.plan == 'pro' ? 120 : 0", event({ plan: "free" }))).toEqual({ seconds: 0 });
    expect(priorityOf("event.data.n", event({ n: -5000 }))).toEqual({ seconds: -600, problem: expect.stringContaining("clamped to -600 seconds") });
    expect(priorityOf("event.data.n", event({ n: 2.4 }))).toEqual({ seconds: 2 });
  });

  it("is 0, with a warning that names the event, when the expression gives no number", () => {
    expect(priorityOf("event.data.plan", event({ plan: "pro" }))).toEqual({ seconds: 0, problem: expect.stringContaining('gave "pro" for event evt-1, not a number of seconds') });
    expect(priorityOf("event.data.missing.deeper", event({}))).toMatchObject({ seconds: 0 });
  });
});
