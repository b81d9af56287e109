/**
 * The SDK's side of checkpointing, one invocation at a time against a recording checkpointer:
 * consecutive steps go on while each commit succeeds; any refusal, a failed attempt, a spent
 * budget, or the function doing something else while a step ran ends the invocation with the
 * step's result in the answer, exactly as a replay would see it.
 */
import { describe, expect, it } from "vitest";
import type { Checkpointer } from "../src/checkpointing.ts";
import { execute } from "../src/execution.ts";
import { Stepwise } from "../src/index.ts";
import { request } from "./helpers.ts";

const client = new Stepwise({ id: "shop", dev: true, logger: { debug() {}, info() {}, warn() {}, error() {} } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function recorder(accept: (n: number) => boolean = () => true, deadline = Date.now() + 60_000) {
  const committed: string[] = [];
  const checkpointer: Checkpointer = {
    deadline,
    async commit(op) {
      if (!accept(committed.length)) return false;
      committed.push(`${op.id}=${JSON.stringify(op.output)}`);
      return true;
    },
  };
  return { committed, checkpointer };
}

const chain = client.createFunction({ id: "fulfil", triggers: [{ event: "order/created" }] }, async ({ step }) => {
  const a = await step.run("a", () => ({ at: new Date(0) }));
  const b = await step.run("b", () => `${a.at}!`);
  return step.run("c", () => b.length);
});

describe("checkpointing in the SDK", () => {
  it("runs consecutive steps in one invocation, each committed before the next starts, with its JSON value", async () => {
    const { committed, checkpointer } = recorder();
    const result = await execute(chain, request(), { checkpointer });
    expect(committed).toEqual(['a={"at":"1970-01-01T00:00:00.000Z"}', 'b="1970-01-01T00:00:00.000Z!"', "c=25"]);
    expect(result).toEqual({ status: 200, body: { type: "completed", output: 25 } });
  });

  it("stops at the first refused commit and answers with that step's result", async () => {
    const { committed, checkpointer } = recorder((n) => n < 1);
    const result = await execute(chain, request(), { checkpointer });
    expect(committed).toHaveLength(1);
    expect(result).toEqual({ status: 206, body: { type: "ops", ops: [{ op: "step-ran", id: "b", name: "b", position: 1, output: "1970-01-01T00:00:00.000Z!" }] } });
  });

  it("starts no step past the budget: the step that ends past it goes in the answer", async () => {
    const { committed, checkpointer } = recorder(() => true, Date.now() - 1);
    const result = await execute(chain, request(), { checkpointer });
    expect(committed).toEqual([]);
    expect(result.body).toMatchObject({ type: "ops", ops: [{ op: "step-ran", id: "a" }] });
  });

  it("does not go on when the body called another step while one ran (it would be refused as nested there)", async () => {
    const racing = client.createFunction({ id: "racing", triggers: [{ event: "order/created" }] }, async ({ step }) => {
      const [a, b] = await Promise.all([
        step.run("a", async () => (await sleep(50), "a")),
        sleep(10).then(() => step.run("b", () => "b")),
      ]);
      return `${a}${b}`;
    });
    const { committed, checkpointer } = recorder();
    const result = await execute(racing, request(), { checkpointer });
    // Answered as without checkpoints; the next invocation replays a and reaches b as a new step.
    expect(committed).toEqual([]);
    expect(result).toEqual({ status: 206, body: { type: "ops", ops: [{ op: "step-ran", id: "a", name: "a", position: 0, output: "a" }] } });
  });

  it("does not checkpoint a failed attempt: the executor schedules its retry", async () => {
    const failing = client.createFunction({ id: "failing", triggers: [{ event: "order/created" }] }, async ({ step }) => {
      await step.run("a", () => {
        throw new Error("payment API down");
      });
    });
    const { committed, checkpointer } = recorder();
    const result = await execute(failing, request(), { checkpointer });
    expect(committed).toEqual([]);
    expect(result.body).toMatchObject({ type: "ops", ops: [{ op: "step-failed", id: "a", retriable: true, error: { message: "payment API down" } }] });
  });
});
