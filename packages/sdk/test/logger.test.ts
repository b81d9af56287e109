/** The handler's logger prints each line once per real execution, not once per replay. */
import { describe, expect, it } from "vitest";
import { Stepwise } from "../src/index.ts";
import { done, invoke, recordingLogger, request } from "./helpers.ts";

function logged() {
  const { lines, logger } = recordingLogger();
  const stepwise = new Stepwise({ id: "shop", logger });
  const fn = stepwise.createFunction({ id: "f", triggers: [{ event: "order/created" }] }, async ({ step, logger: log }) => {
    log.info("starting");
    await step.run("a", () => log.info("running a"));
    const { warn } = log;
    warn("between");
    await step.run("b", () => log.info("running b"));
    log.info("finished");
  });
  return { lines, fn };
}

describe("logger", () => {
  it("prints only the step that runs, prefixed with the run ID", async () => {
    const { lines, fn } = logged();
    await invoke(fn, request([done(0, "a", null)]));
    expect(lines).toEqual(["info [run-1] running b"]);
  });

  it("prints the body's lines when the function completes", async () => {
    const { lines, fn } = logged();
    const res = await invoke(fn, request([done(0, "a", null), done(1, "b", null)]));
    expect(res.status).toBe(200);
    expect(lines).toEqual(["info [run-1] starting", "warn [run-1] between", "info [run-1] finished"]);
  });
});
