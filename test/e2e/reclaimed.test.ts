/**
 * An executor keeps the state its commit left for a run's first invocation, so claiming that
 * job later needs no read. If another executor claimed the job first, had a step checkpointed
 * under it and died, that kept state lacks the step: an invocation built from it would have
 * the app run the step's body again. A job claimed before is read afresh.
 */
import { Executor } from "@stepwise/engine";
import { DEV_SIGNING_KEY } from "@stepwise/protocol";
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { memoryLogger, startStack, STORE_KINDS, type Stack } from "../support/stack.ts";

let bodies = 0;
const client = new Stepwise({ id: "reclaimed", dev: true, schemas: { "reclaimed/go": z.object({}) } });
const once = client.createFunction({ id: "once", triggers: [{ event: "reclaimed/go" }] }, async ({ step }) => {
  const charged = await step.run("charge", () => (bodies++, "charged again"));
  return { charged };
});

describe.each(STORE_KINDS)("a first invocation claimed again after its holder died, on %s", (kind) => {
  let stack: Stack;
  let ingester: Executor;
  beforeAll(async () => {
    stack = await startStack({ store: kind, client, functions: [once] });
    // The stack's own lanes stop: only the executor that stored the event may claim the job.
    await stack.executor.executor.stop(0);
    ingester = new Executor({ store: stack.store, signingKey: DEV_SIGNING_KEY, log: memoryLogger(), pollMs: 50, leaseMs: 2_000 });
  }, 60_000);
  afterAll(async () => {
    await ingester?.stop(0);
    await stack?.close();
  });

  it("sends the step the dead holder committed, and its body does not run again", async () => {
    // Stored by an executor whose lanes are not running: the first invocation waits in the queue,
    // and the executor keeps the state its commit left (the run, no steps).
    const { ids } = await ingester.sendEvents({ name: "reclaimed/go", data: {} });
    const [run] = await stack.store.listRunsByEvent(ids[0]!);
    // Another executor claims the job, the app checkpoints "charge" under it, and that executor dies.
    const [job] = await stack.store.queue.claim("executor-that-died", 10, 300);
    expect(job).toMatchObject({ runId: run!.id, kind: "invoke", claims: 1 });
    const step = { runId: run!.id, id: "charge", name: "charge", kind: "run" as const, position: 0, status: "completed" as const, output: "charged once", attempts: 1, startedAt: new Date(), endedAt: new Date() };
    const committed = await stack.store.checkpoint({
      runId: run!.id,
      functionId: run!.functionId,
      lease: { jobId: job!.id, owner: "executor-that-died", claims: 1 },
      leaseMs: 300,
      step,
      bytes: JSON.stringify(step.output).length,
      maxRunStateBytes: 1024 * 1024,
    });
    expect(committed.ok).toBe(true);
    // Its lease runs out; the executor that stored the event claims the job again.
    await new Promise((resolve) => setTimeout(resolve, 400));
    await ingester.start();
    const ended = await stack.waitForRun(ids[0]!);
    expect(ended).toMatchObject({ status: "completed", output: { charged: "charged once" } });
    expect(bodies).toBe(0);
  });
});
