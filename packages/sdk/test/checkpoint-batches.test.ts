/**
 * Checkpoints of many invocations at once, the SDK's side: a checkpoint goes at once while a
 * lane is free, the ones that wait go together in one batch, and each invocation hears its own
 * checkpoint's outcome, exactly as if it had gone alone. A batch that fails on the way (a 5xx
 * page, a refused connection, an answer cut off or not a batch's) fails every checkpoint in it,
 * so each invocation answers with its result: never a step taken for committed when it is not.
 * A batch refused whole (400, 413: nothing of it written) goes again, one checkpoint a request, at once.
 */
import { CHECKPOINT_ROUTE, DEV_SIGNING_KEY, verify, type CheckpointBatch, type CheckpointRequest } from "@stepwise/protocol";
import { describe, expect, it, vi } from "vitest";
import type { ExecutorTransport } from "../src/api.ts";
import { CHECKPOINT_TIMEOUT_MS, LANES, MAX_WAIT_MS, SINGLES_AFTER_REFUSAL_MS } from "../src/checkpoint-sender.ts";
import { checkpointerFor } from "../src/checkpointing.ts";
import { FailureNotices } from "../src/notices.ts";
import { request } from "./helpers.ts";

type Answer = (sent: CheckpointRequest | CheckpointBatch) => Response | Promise<Response>;

/** An executor behind a fake fetch: records each request's body and answers with `answer`, after `gate` opens. */
function executor(answer: Answer, batches = true) {
  const sent: Array<CheckpointRequest | CheckpointBatch> = [];
  const warnings: string[] = [];
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const transport: ExecutorTransport = {
    // Each test its own fetch: senders are kept per fetch, executor and key.
    fetch: (async (_url: string, init?: RequestInit) => {
      const body = String(init?.body);
      const check = await verify(new Headers(init?.headers).get("x-stepwise-signature") ?? undefined, { method: "POST", target: CHECKPOINT_ROUTE, body }, [DEV_SIGNING_KEY]);
      if (!check.ok) throw new Error(`unsigned: ${check.message}`);
      const parsed = JSON.parse(body) as CheckpointRequest | CheckpointBatch;
      sent.push(parsed);
      await gate;
      return answer(parsed);
    }) as typeof fetch,
    baseUrl: "http://executor.test",
    signingKey: DEV_SIGNING_KEY,
    notices: new FailureNotices({ debug() {}, info() {}, warn: (line: unknown) => warnings.push(String(line)), error() {} }),
  };
  /** Commits step "s" of run `run-N` through its own invocation's checkpointer. */
  const commit = (n: number, output: unknown = n) => {
    const invocation = request([], { run: { id: `run-${n}`, appId: "shop", functionId: "fulfil", attempt: 0 }, checkpoint: { token: `${n}.1.executor`, ...(batches && { batches: true }) } });
    const checkpointer = checkpointerFor(invocation, 60_000, transport)!;
    return checkpointer.commit({ op: "step-ran", id: "s", name: "s", position: 0, output }, 1);
  };
  return { sent, warnings, open: () => open(), commit };
}

const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
const ok = () => json({ ok: true });
/** Answers a batch with an outcome per checkpoint from `outcome`, and a single checkpoint with `ok`. */
const outcomes = (outcome: (c: CheckpointRequest) => unknown): Answer => (sent) => ("checkpoints" in sent ? json({ ok: true, outcomes: sent.checkpoints.map(outcome) }) : ok());
const isBatch = (sent: CheckpointRequest | CheckpointBatch): sent is CheckpointBatch => "checkpoints" in sent;
const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

describe("checkpoint batches", () => {
  it(`sends ${LANES} checkpoints at once alone, then the ones that waited in one batch; each hears its own outcome`, async () => {
    const exec = executor(outcomes((c) => (c.run.id === "run-3" ? { status: 409, error: "the run has ended", refused: "run-ended" } : { status: 200 })));
    const results = [1, 2, 3, 4, 5].map((n) => exec.commit(n));
    await tick();
    // Two on the way, three waiting: nothing more is sent until a lane is free.
    expect(exec.sent.map((s) => (isBatch(s) ? "batch" : s.run.id))).toEqual(["run-1", "run-2"]);
    exec.open();
    expect(await Promise.all(results)).toEqual([true, true, false, true, true]);
    expect(exec.sent).toHaveLength(3);
    const batch = exec.sent[2] as CheckpointBatch;
    expect(batch).toMatchObject({ appId: "shop", checkpoints: [{ run: { id: "run-3" } }, { run: { id: "run-4" } }, { run: { id: "run-5" } }] });
    expect(batch.checkpoints.map((c) => [c.token, c.step.output])).toEqual([["3.1.executor", 3], ["4.1.executor", 4], ["5.1.executor", 5]]);
    // A refusal (409) is the executor's word, not a fault: no warning.
    expect(exec.warnings).toEqual([]);
  });

  it("never batches for an executor whose offer does not say it takes batches: each goes at once, alone", async () => {
    const exec = executor(ok, false);
    const results = [1, 2, 3, 4, 5].map((n) => exec.commit(n));
    await tick();
    expect(exec.sent.map((s) => (isBatch(s) ? "batch" : s.run.id))).toEqual(["run-1", "run-2", "run-3", "run-4", "run-5"]);
    exec.open();
    expect(await Promise.all(results)).toEqual([true, true, true, true, true]);
  });

  it("never batches in a Cloudflare Worker, which cancels a request waiting on I/O another request started", async () => {
    vi.stubGlobal("navigator", { userAgent: "Cloudflare-Workers" });
    try {
      const exec = executor(ok);
      const results = [1, 2, 3, 4, 5].map((n) => exec.commit(n));
      await tick();
      expect(exec.sent.map((s) => (isBatch(s) ? "batch" : s.run.id))).toEqual(["run-1", "run-2", "run-3", "run-4", "run-5"]);
      exec.open();
      expect(await Promise.all(results)).toEqual([true, true, true, true, true]);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it("a single checkpoint alone goes at once: a chain of steps never waits for a batch", async () => {
    const exec = executor(ok);
    const first = exec.commit(1);
    await tick();
    expect(exec.sent).toHaveLength(1);
    exec.open();
    expect(await first).toBe(true);
    expect(await exec.commit(2)).toBe(true);
    expect(exec.sent.every((s) => !isBatch(s))).toBe(true);
  });

  const faults: Array<[string, Answer | "refuse"]> = [
    ["a 502 page", (sent) => ("checkpoints" in sent ? new Response("<html><h1>502 Bad Gateway</h1></html>", { status: 502, headers: { "content-type": "text/html" } }) : ok())],
    ["a refused connection", "refuse"],
    ["an answer cut off mid-JSON", (sent) => ("checkpoints" in sent ? new Response('{"ok":true,"outcomes":[{"status":200},{"sta', { status: 200 }) : ok())],
    ["a 200 that is not a batch's answer (a proxy's page)", (sent) => ("checkpoints" in sent ? new Response("<html>Welcome</html>", { status: 200 }) : ok())],
    ["fewer outcomes than checkpoints", (sent) => ("checkpoints" in sent ? json({ ok: true, outcomes: [{ status: 200 }] }) : ok())],
  ];
  it.each(faults)("a batch that meets %s fails every checkpoint in it, each answered with its result and a warning", async (_name, answer) => {
    const exec = executor(
      answer === "refuse"
        ? (sent) => {
            if (isBatch(sent)) throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) });
            return ok();
          }
        : answer,
    );
    const results = [1, 2, 3, 4].map((n) => exec.commit(n));
    exec.open();
    expect(await Promise.all(results)).toEqual([true, true, false, false]);
    expect(exec.sent.filter(isBatch)).toHaveLength(1);
    // One notice per kind of failure (notices.ts): the batch's failure is reported.
    expect(exec.warnings).toHaveLength(1);
    expect(exec.warnings[0]).toMatch(/run run-3 step "s": checkpoint (answered|to http:\/\/executor\.test\/api\/checkpoints failed)/);
  });

  const refusals: Array<[string, Response]> = [
    ["an executor that predates batches (400: not a checkpoint)", json({ error: "Not a Stepwise checkpoint: body.run: Required" }, 400)],
    ["a batch over the executor's body limit (413)", json({ error: "Request body too large: the limit is 1000 bytes" }, 413)],
  ];
  it.each(refusals)("a batch refused whole by %s goes again one checkpoint a request, and checkpoints go alone for a while", async (_name, refusal) => {
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      const exec = executor((sent) => (isBatch(sent) ? refusal.clone() : ok()));
      exec.open();
      const first = [1, 2, 3, 4].map((n) => exec.commit(n));
      // Nothing of a batch refused whole was written: each of its checkpoints commits alone.
      expect(await Promise.all(first)).toEqual([true, true, true, true]);
      const shapes = () => exec.sent.map((s) => (isBatch(s) ? `batch of ${s.checkpoints.length}` : s.run.id));
      expect(shapes()).toEqual(["run-1", "run-2", "batch of 2", "run-3", "run-4"]);
      expect(exec.warnings).toHaveLength(1);
      expect(exec.warnings[0]).toMatch(/^Stepwise: the executor at http:\/\/executor\.test refused a batch of 2 checkpoints whole \((400|413): \{"error":.*\}\); each goes alone for 60 s/);
      // Within the minute, checkpoints that wait go alone, not as a batch the executor refuses.
      exec.sent.length = 0;
      expect(await Promise.all([5, 6, 7, 8].map((n) => exec.commit(n)))).toEqual([true, true, true, true]);
      expect(shapes()).toEqual(["run-5", "run-6", "run-7", "run-8"]);
      // After it, batches are tried again (the executor may have been replaced by one that takes them).
      vi.setSystemTime(Date.now() + SINGLES_AFTER_REFUSAL_MS);
      exec.sent.length = 0;
      expect(await Promise.all([9, 10, 11, 12].map((n) => exec.commit(n)))).toEqual([true, true, true, true]);
      expect(shapes()).toEqual(["run-9", "run-10", "batch of 2", "run-11", "run-12"]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("while checkpoints go alone after a refused batch, none waits for a lane: the refused ones and later ones go at once", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const exec = executor(async (sent) => {
      if (isBatch(sent)) return new Response("<html>\r\n<h1>400 Bad Request</h1>\r\n</html>", { status: 400, headers: { "content-type": "text/html" } });
      await held;
      return ok();
    });
    exec.open();
    const shapes = () => exec.sent.map((s) => (isBatch(s) ? `batch of ${s.checkpoints.length}` : s.run.id));
    // Two alone on the lanes, held; the four waiting go as a batch on an extra lane after MAX_WAIT_MS, refused.
    const first = [1, 2, 3, 4, 5, 6].map((n) => exec.commit(n));
    await vi.waitFor(() => expect(shapes()).toHaveLength(7), { timeout: 2_000, interval: 5 });
    expect(shapes()).toEqual(["run-1", "run-2", "batch of 4", "run-3", "run-4", "run-5", "run-6"]);
    const later = [7, 8, 9, 10].map((n) => exec.commit(n));
    await tick();
    expect(shapes().slice(7)).toEqual(["run-7", "run-8", "run-9", "run-10"]);
    release();
    expect(await Promise.all([...first, ...later])).toEqual(Array(10).fill(true));
    // An HTML page's line breaks do not break the warning's one line.
    expect(exec.warnings).toHaveLength(1);
    expect(exec.warnings[0]).not.toMatch(/[\r\n]/);
    expect(exec.warnings[0]).toContain("(400: <html> <h1>400 Bad Request</h1> </html>)");
  });

  it(`a slow checkpoint holds up the others ${MAX_WAIT_MS} ms at most: then the ones waiting go on a lane of their own`, async () => {
    // The first two never answer (a lock wait, a stalled executor); the rest are answered at once.
    const slow = new Set(["run-1", "run-2"]);
    const exec = executor((sent) => (isBatch(sent) ? json({ ok: true, outcomes: sent.checkpoints.map(() => ({ status: 200 })) }) : slow.has(sent.run.id) ? new Promise<Response>(() => {}) : ok()));
    exec.open();
    void exec.commit(1);
    void exec.commit(2);
    const startedAt = Date.now();
    const [third, fourth] = await Promise.all([exec.commit(3), exec.commit(4)]);
    expect([third, fourth]).toEqual([true, true]);
    expect(Date.now() - startedAt).toBeLessThan(1_000);
    expect(exec.sent.map((s) => (isBatch(s) ? s.checkpoints.map((c) => c.run.id).join("+") : s.run.id))).toEqual(["run-1", "run-2", "run-3+run-4"]);
  });

  it("an executor that never answers holds no checkpoint for good: each fails within its timeout, waiting included", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    try {
      // A fetch that ignores its signal and never settles (the gate is never opened).
      const exec = executor(ok);
      const results = [1, 2, 3, 4].map((n) => exec.commit(n));
      await vi.advanceTimersByTimeAsync(CHECKPOINT_TIMEOUT_MS - 1);
      // Two alone, then the two that waited, together on a lane of their own.
      expect(exec.sent.map((s) => (isBatch(s) ? "batch" : s.run.id))).toEqual(["run-1", "run-2", "batch"]);
      await vi.advanceTimersByTimeAsync(1);
      // All four give up at 10 s from their send, the batch's waiting included.
      expect(await Promise.all(results)).toEqual([false, false, false, false]);
      expect(exec.warnings[0]).toMatch(/failed \(no answer within 10000 ms\)/);
    } finally {
      vi.useRealTimers();
    }
  });

  it("a batch carries at most 1 MB of UTF-8: a larger checkpoint waits for the next request, and goes alone", async () => {
    const exec = executor(outcomes(() => ({ status: 200 })));
    // 300 K characters of three bytes each: 900 KB.
    const big = "€".repeat(300 * 1024);
    const results = [exec.commit(1), exec.commit(2), exec.commit(3, big), exec.commit(4, big), exec.commit(5)];
    exec.open();
    expect(await Promise.all(results)).toEqual([true, true, true, true, true]);
    const sizes = exec.sent.map((s) => (isBatch(s) ? s.checkpoints.map((c) => c.run.id) : [s.run.id]));
    expect(sizes.slice(0, 2)).toEqual([["run-1"], ["run-2"]]);
    // Run 3's big checkpoint and run 5's go together; run 4's big one does not fit beside run 3's.
    expect(sizes.slice(2).sort()).toEqual([["run-3", "run-5"], ["run-4"]]);
  });
});
