/**
 * Whole runs against a tiny in-memory executor that behaves like the real one: it stores
 * each op's result, runs planned steps with `targetStep`, and re-invokes the function only
 * when no step is in flight. Checks that replays stay deterministic across many invocations.
 */
import type { InvokeResponse, Op, StoredStep } from "@stepwise/protocol";
import { describe, expect, it } from "vitest";
import type { RunnableFunction } from "../src/function.ts";
import { Stepwise } from "../src/index.ts";
import { invoke, recordingLogger, request } from "./helpers.ts";

const KIND: Record<Op["op"], StoredStep["kind"]> = {
  "step-ran": "run",
  "step-failed": "run",
  "step-planned": "run",
  sleep: "sleep",
  wait: "wait",
  "wait-signal": "wait",
  "wait-callback": "wait",
  callback: "callback",
  fetch: "fetch",
  send: "send",
  invoke: "invoke",
};

/** Drives `fn` to the end; returns the final answer and how many invocations it took. */
async function drive(fn: RunnableFunction, maxRetries = 2): Promise<{ final: InvokeResponse; invocations: number; steps: StoredStep[] }> {
  const steps = new Map<string, StoredStep>();
  const attempts = new Map<string, number>();
  let invocations = 0;
  const call = async (targetStep?: string) => {
    invocations++;
    const res = await invoke(fn, request([...steps.values()], targetStep === undefined ? {} : { targetStep }));
    if (res.body.type !== "ops") return res.body;
    for (const op of res.body.ops) apply(op);
    return undefined;
  };
  const apply = (op: Op) => {
    const base = { id: op.id, name: op.name, position: op.position, kind: KIND[op.op] };
    if (op.op === "step-failed") {
      const tries = (attempts.get(op.id) ?? 0) + 1;
      attempts.set(op.id, tries);
      const final = !op.retriable || tries > maxRetries;
      steps.set(op.id, final ? { ...base, status: "failed", error: op.error } : { ...base, status: "pending" });
    } else if (op.op === "step-ran") steps.set(op.id, { ...base, status: "completed", output: op.output });
    else if (op.op === "send") steps.set(op.id, { ...base, status: "completed", output: { ids: op.events.map((_, i) => `${op.id}-${i}`) } });
    else if (op.op === "wait") steps.set(op.id, { ...base, status: "completed", output: null });
    else if (op.op === "sleep") steps.set(op.id, { ...base, status: "completed" });
    else steps.set(op.id, { ...base, status: "pending" });
  };
  for (let round = 0; round < 50; round++) {
    const inFlight = [...steps.values()].filter((step) => step.status === "pending");
    for (const step of inFlight) {
      const answer = await call(step.id);
      if (answer) throw new Error(`targetStep ${step.id} answered ${JSON.stringify(answer)}`);
    }
    const answer = await call();
    if (answer) return { final: answer, invocations, steps: [...steps.values()] };
  }
  throw new Error("run did not finish in 50 rounds");
}

const { logger } = recordingLogger();
const stepwise = new Stepwise({ id: "shop", logger });

describe("simulated runs", () => {
  it("completes a run with sequential, parallel, repeated and non-run steps", async () => {
    const fn = stepwise.createFunction({ id: "f", triggers: [{ event: "order/created" }] }, async ({ step }) => {
      const base = await step.run("base", () => 10);
      const branch = async (label: string) => {
        const first = await step.run("part", () => `${label}1`);
        const second = await step.run("part", () => `${label}2`);
        return [first, second];
      };
      const [left, right] = await Promise.all([branch("L"), branch("R")]);
      await step.sleep("cool-down", "1m");
      const paid = await step.waitForEvent("paid", { event: "payment/settled", timeout: "1h" });
      const sent = await step.sendEvent("notify", { name: "order/done", data: { base } });
      return { base, left, right, paid, sent };
    });
    const { final, steps } = await drive(fn);
    expect(final).toEqual({
      type: "completed",
      output: { base: 10, left: ["L1", "L2"], right: ["R1", "R2"], paid: null, sent: { ids: ["notify-0"] } },
    });
    expect(steps.map((step) => `${step.position}:${step.id}`)).toEqual([
      "0:base",
      "1:part",
      "2:part:1",
      "3:part:2",
      "4:part:3",
      "5:cool-down",
      "6:paid",
      "7:notify",
    ]);
  });

  it("retries a flaky step and lets the function handle a step that keeps failing", async () => {
    let flakyCalls = 0;
    const fn = stepwise.createFunction({ id: "f", triggers: [{ event: "order/created" }] }, async ({ step }) => {
      const flaky = await step.run("flaky", () => {
        flakyCalls++;
        if (flakyCalls < 3) throw new Error(`try ${flakyCalls}`);
        return "ok";
      });
      const broken = await step.run("broken", () => {
        throw new Error("always");
      }).catch((error: Error) => `handled ${error.message}`);
      return { flaky, broken };
    });
    const { final } = await drive(fn);
    expect(final).toEqual({ type: "completed", output: { flaky: "ok", broken: "handled always" } });
    expect(flakyCalls).toBe(3);
  });
});
