/**
 * The function configuration's own checks: combinations of options that cannot both hold are
 * refused with the option's path, the same for the SDK and the executor's sync.
 */
import { describe, expect, it } from "vitest";
import { FunctionConfigSchema } from "../src/function-config.ts";

const problems = (config: Record<string, unknown>) => {
  const checked = FunctionConfigSchema.safeParse({ id: "f", retries: 0, triggers: [{ event: "a/b" }], ...config });
  return checked.success ? [] : checked.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
};

describe("function configuration", () => {
  it("refuses a trigger written twice, saying one run starts either way", () => {
    expect(problems({ triggers: [{ event: "a/b" }, { event: "a/b" }] })).toEqual(['triggers.1: repeats the trigger on event "a/b": one run starts either way, so remove one']);
    expect(problems({ triggers: [{ cron: "0 9 * * *" }, { event: "a/b" }, { cron: "0 9 * * *" }] })).toEqual(['triggers.2: repeats the trigger on cron "0 9 * * *": one run starts either way, so remove one']);
    // The same event under two conditions, or under one and none, are two triggers.
    expect(problems({ triggers: [{ event: "a/b", if: "event.data.x > 1" }, { event: "a/b", if: "event.data.y > 1" }, { event: "a/b" }] })).toEqual([]);
  });

  it("refuses a cron trigger of a debounced or batched function", () => {
    expect(problems({ triggers: [{ event: "a/b" }, { cron: "0 9 * * *" }], batchEvents: { maxSize: 10, timeout: "5s" } })).toEqual([
      "triggers.1: a cron trigger cannot be combined with batchEvents: its ticks come one at a time, on a schedule, and would only hold each other back",
    ]);
    expect(problems({ triggers: [{ cron: "0 9 * * *" }], debounce: { period: "5s" } }).map((p) => p.split(":")[0])).toEqual(["triggers.0"]);
  });

  it("refuses debounce beside the checks that decide as each event arrives, and a start timeout within its period", () => {
    const refused = problems({ debounce: { period: "10s" }, rateLimit: { limit: 1, period: "1m" }, singleton: { mode: "cancel" }, priority: { run: "60" } });
    expect(refused.map((p) => p.split(":")[0])).toEqual(["rateLimit", "singleton", "priority"]);
    expect(problems({ debounce: { period: "10s" }, timeouts: { start: "10s", finish: "5s" } })).toEqual([
      'timeouts.start: must be longer than debounce.period ("10s"): every debounced run waits that long before it starts',
      'timeouts.finish: must be longer than debounce.period ("10s"): every debounced run waits that long before it starts',
    ]);
    expect(problems({ debounce: { period: "10s", timeout: "1m" }, timeouts: { start: "2m", finish: "1h" }, concurrency: 2, idempotency: "event.id" })).toEqual([]);
  });
});
