/**
 * The simulated app: real SDK functions that interpret the program in their event. Each step
 * body writes to the ledger (which invocation ran it) and returns a token with its value, so
 * the checker can tell which execution's result was committed. A completed run returns what
 * every step call gave it, to be compared with what the store holds.
 */
import { NonRetriableError, Stepwise, StepError, type AnyStepwiseFunction, type EventSchemas, type Publish, type StepTools } from "@stepwise/sdk";
import { serve } from "@stepwise/sdk/fetch";
import { setCheckpointLanes, setSinglesAfterRefusal } from "../../packages/sdk/src/checkpoint-sender.ts";
import { PUBLISH_ROUTE, STEP_OUTPUTS_ROUTE, type CheckpointBatch, type CheckpointBatchAnswer, type CheckpointRequest, type PublishRequest, type StepOutputsRequest } from "@stepwise/protocol";
import { signalName, valueOf, type Item, type RunItem } from "./program.ts";
import { invocationContext, type Ledger } from "./ledger.ts";
import { badGateway, unit } from "./network.ts";
import { targetUrl } from "./target.ts";

/** The pattern of the simulation's cron trigger: every 3 s. */
export const SIM_CRON = "*/3 * * * * *";
export const SIM_CRON_PERIOD_MS = 3_000;
export const SIM_APP_ID = "sim";
/** The throttle of the simulation's noise function: 20 starts per second, 5 at once. */
export const SIM_THROTTLE = { limit: 4, period: 1_000, burst: 2 };
/** The batches of the simulation's noise, one for every key. */
export const SIM_BATCH = { maxSize: 3, timeout: "1s" };
/** The debounce of the simulation's noise, per key. */
export const SIM_DEBOUNCE = { key: "event.data.key", period: "1s", timeout: "2s" };

export interface SimApp {
  functions: AnyStepwiseFunction[];
  handler: (request: Request) => Promise<Response>;
}

type Step = StepTools<EventSchemas>;

/** How the app reaches the executors (checkpoints, reads of left-out outputs), and how often that path fails. */
export interface CheckpointPath {
  seed: number;
  /** Chance that a checkpoint meets a fault, while faults are on. */
  rate: () => number;
  /** One live executor's HTTP API (any of them: the fence is in the store). */
  toExecutor: (request: Request) => Promise<Response>;
}

export type CheckpointFault = "refuse" | "502 before" | "502 after" | "app crash before" | "app crash after";
export const CHECKPOINT_FAULTS: CheckpointFault[] = ["refuse", "502 before", "502 after", "app crash before", "app crash after"];
/**
 * A batch meets the same faults, and its answer (a list of outcomes) can also come cut off, or
 * the batch be refused whole, unread, by an executor that predates batches (a rolling deploy):
 * the app sends its checkpoints again, one at a time.
 */
export const BATCH_FAULTS: Array<CheckpointFault | "cut off" | "refused whole"> = [...CHECKPOINT_FAULTS, "cut off", "refused whole"];
export type OutputsReadFault = "refuse" | "502" | "cut off" | "app crash";
export const OUTPUTS_READ_FAULTS: OutputsReadFault[] = ["refuse", "502", "cut off", "app crash"];
type PublishFault = "refuse" | "502" | "cut off";
export const PUBLISH_FAULTS: PublishFault[] = ["refuse", "502", "cut off"];

/**
 * Checkpoints on their way to an executor, alone or several invocations' in one batch, with
 * faults: refused, a 502 page before or after the executor committed, a batch's answer cut off
 * or the batch refused whole (400, nothing written), or the app's process dying before or after
 * (its invocations never answer, and the executor's own timeout ends them).
 */
function checkpointFetch(ledger: Ledger, path: CheckpointPath): typeof fetch {
  /** Checkpoints of batches refused whole, by run, step and invocation: each comes again alone, and draws its fault afresh. */
  const refusedWhole = new Set<string>();
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input instanceof Request ? input.url : input);
    const body = String(init?.body ?? "");
    if (url.endsWith(STEP_OUTPUTS_ROUTE)) return readOutputs(ledger, path, url, body, init);
    if (url.endsWith(PUBLISH_ROUTE)) return publishWithFaults(ledger, path, url, body, init);
    const sent = JSON.parse(body) as CheckpointRequest | CheckpointBatch;
    const batch = "checkpoints" in sent ? sent.checkpoints : undefined;
    const checkpoints = batch ?? [sent as CheckpointRequest];
    const invocations = checkpoints.map((c) => ledger.invocationOfCheckpoint(c.run.id, c.token)?.id);
    checkpoints.forEach((c, i) => invocations[i] === undefined && ledger.unattributedCheckpoints.push({ runId: c.run.id, stepId: c.step.id }));
    /** The app hears these checkpoints not committed: it must run no further step in their invocations. */
    const notCommitted = (how: "refused" | "failed", which: (i: number) => boolean = () => true) =>
      checkpoints.forEach((c, i) => {
        const invocation = invocations[i];
        if (invocation !== undefined && which(i)) ledger.refusedCheckpoints.push({ invocation, runId: c.run.id, stepId: c.step.id, at: Date.now(), how });
      });
    const idOf = (i: number) => `${checkpoints[i]!.run.id}|${checkpoints[i]!.step.id}|${invocations[i]}`;
    const where = `${path.seed}|cp|${idOf(0)}${!batch && refusedWhole.has(idOf(0)) ? "|again" : ""}`;
    const faults = batch ? BATCH_FAULTS : CHECKPOINT_FAULTS;
    const fault = unit(where) < path.rate() ? faults[Math.floor(unit(`${where}|kind`) * faults.length)]! : "none";
    const what = batch ? `checkpoint batch` : "checkpoint";
    const dies = (when: string) => {
      invocations.forEach((invocation) => ledger.appCrashed(invocation, `app crash ${when} ${what}`));
      return new Promise<Response>(() => {});
    };
    if (fault === "refused whole") {
      checkpoints.forEach((_, i) => refusedWhole.add(idOf(i)));
      return ledger.fault(`${what} refused whole`), Response.json({ error: "Not a Stepwise checkpoint: body.run: Required" }, { status: 400 });
    }
    if (batch) ledger.checkpointBatches.push(batch.length);
    if (fault === "refuse") {
      ledger.fault(`${what} refused connection`);
      notCommitted("failed");
      throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:8288"), { code: "ECONNREFUSED" }) });
    }
    if (fault === "502 before") return ledger.fault(`${what} 502 before`), notCommitted("failed"), badGateway();
    if (fault === "app crash before") return dies("before");
    // The way to the executor takes a few ms, as a network does: checkpoints of the app's invocations overlap, and the ones that wait go in batches.
    await new Promise((resolve) => setTimeout(resolve, Math.floor(unit(`${where}|latency`) * 25)));
    const response = await path.toExecutor(new Request(url, { method: "POST", headers: init?.headers, body }));
    if (fault === "502 after") return ledger.fault(`${what} 502 after`), notCommitted("failed"), badGateway();
    if (fault === "app crash after") return dies("after");
    const text = await response.text();
    if (fault === "cut off") return ledger.fault(`${what} answer cut off`), notCommitted("failed"), new Response(text.slice(0, Math.max(1, text.length - 7)), { status: response.status, headers: { "content-type": "application/json" } });
    const statuses = response.status !== 200 ? checkpoints.map(() => response.status) : batch ? (JSON.parse(text) as CheckpointBatchAnswer).outcomes.map((o) => o.status) : [200];
    ledger.checkpointsCommitted += statuses.filter((status) => status === 200).length;
    notCommitted("refused", (i) => statuses[i] === 409);
    notCommitted("failed", (i) => statuses[i] !== 200 && statuses[i] !== 409);
    return new Response(text, { status: response.status, headers: response.headers });
  }) as typeof fetch;
}

/**
 * A publish on its way to the executor, with faults: refused, a 502 page, or the answer cut off
 * after the executor took it. The SDK drops what it could not deliver; none of it touches the run.
 */
async function publishWithFaults(ledger: Ledger, path: CheckpointPath, url: string, body: string, init?: RequestInit): Promise<Response> {
  const { run } = JSON.parse(body) as PublishRequest;
  const where = `${path.seed}|pub|${run.id}|${body.length}|${invocationContext.getStore()}`;
  const fault = unit(where) < path.rate() ? PUBLISH_FAULTS[Math.floor(unit(`${where}|kind`) * PUBLISH_FAULTS.length)]! : "none";
  if (fault !== "none") ledger.fault(`publish ${fault}`);
  if (fault === "refuse") throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:8288"), { code: "ECONNREFUSED" }) });
  if (fault === "502") return badGateway();
  const response = await path.toExecutor(new Request(url, { method: "POST", headers: init?.headers, body }));
  if (fault === "cut off") return new Response('{"ok":tr', { status: 200, headers: { "content-type": "application/json" } });
  if (response.status === 200) ledger.publishesTaken++;
  return response;
}

/**
 * A read of the stored outputs an invocation left out, with faults: refused, a 502 page, the
 * answer cut off mid-JSON, or the app's process dying while it waits. Each makes the app
 * answer 503 (or never), and the executor invokes again.
 */
async function readOutputs(ledger: Ledger, path: CheckpointPath, url: string, body: string, init?: RequestInit): Promise<Response> {
  const asked = JSON.parse(body) as StepOutputsRequest;
  const invocation = invocationContext.getStore();
  const where = `${path.seed}|out|${asked.run.id}|${asked.steps.join(",")}|${invocation}`;
  const fault = unit(where) < path.rate() ? OUTPUTS_READ_FAULTS[Math.floor(unit(`${where}|kind`) * OUTPUTS_READ_FAULTS.length)]! : "none";
  if (fault !== "none" && fault !== "app crash") ledger.fault(`outputs read ${fault}`);
  if (fault === "refuse") throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:8288"), { code: "ECONNREFUSED" }) });
  if (fault === "502") return badGateway();
  if (fault === "app crash") return ledger.appCrashed(invocation, "app crash reading outputs"), new Promise<Response>(() => {});
  ledger.outputReads++;
  const response = await path.toExecutor(new Request(url, { method: "POST", headers: init?.headers, body }));
  if (fault === "cut off") return new Response((await response.text()).slice(0, 40), { status: 200, headers: { "content-type": "application/json" } });
  return response;
}

/** The app's own notices (a checkpoint that failed on the way, as injected) would drown the report. */
const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

export function simApp(ledger: Ledger, path: CheckpointPath): SimApp {
  // A budget well inside the executors' invocation timeout (500 ms), as users set it below their host's limit.
  // One lane: the simulation's few invocations at once rarely fill two, and their checkpoints should meet in batches.
  setCheckpointLanes(1);
  // A schedule lasts seconds: after a refused batch, checkpoints go alone for a moment, not for the rest of it.
  setSinglesAfterRefusal(300);
  const client = new Stepwise({ id: SIM_APP_ID, dev: true, checkpointing: { maxRuntime: 250 }, fetch: checkpointFetch(ledger, path), logger: quiet });

  /** Runs `program`; `eventId` (of the run's start event) names its signals. */
  const interpret = async (program: Item[], step: Step, runId: string, key: string, attempt: number, eventId: string, publish: Publish): Promise<unknown[]> => {
    const counts = new Map<string, number>();
    // The SDK's step IDs: the name, then name:1, name:2 for repeats.
    const idOf = (name: string) => {
      const n = counts.get(name) ?? 0;
      counts.set(name, n + 1);
      return n === 0 ? name : `${name}:${n}`;
    };
    /** A step name, counted so the IDs of run steps stay known. */
    const named = (name: string) => (idOf(name), name);
    const run = (item: RunItem, seed: string) => {
      const stepId = idOf(item.name);
      const options = item.retries === undefined ? item.name : { id: item.name, retries: item.retries };
      return step
        .run(options, (context) => {
          const body = ledger.body(runId, stepId, item.retries, context);
          // Progress from inside the body: each execution publishes its token once (or it is dropped).
          void publish("body", { stepId, token: body.token });
          const failures = ledger.bodies.filter((b) => b.runId === runId && b.stepId === stepId).length - 1;
          if (item.nonRetriable) {
            body.token = undefined;
            throw new NonRetriableError(`step ${stepId} refuses \u0000 for good`);
          }
          if (failures < item.fail) {
            body.token = undefined;
            throw new Error(`step ${stepId} failed (execution ${failures + 1})`);
          }
          return { token: body.token, value: valueOf(item.value, seed) };
        })
        .catch((error: unknown) => {
          if (item.catch && error instanceof StepError) return { caught: error.name };
          throw error;
        });
    };
    const results: unknown[] = [];
    for (const [i, item] of program.entries()) {
      const seed = `${key}.${i}`;
      switch (item.t) {
        case "run":
          results.push(await run(item, seed));
          break;
        case "parallel":
          results.push(...(await Promise.all(item.branches.map((branch, b) => run(branch, `${seed}.${b}`)))));
          break;
        case "sleep":
          results.push(await step.sleep(named("nap"), item.ms));
          break;
        case "ask": {
          const qid = `${key}:${i}`;
          results.push(await step.sendEvent(named("ask"), { name: "sim/question", data: { qid, delayMs: item.replyDelayMs } }));
          results.push(await step.waitForEvent(named("answer"), { event: "sim/answer", if: `async.data.qid == "${qid}"`, timeout: item.timeoutMs }));
          break;
        }
        case "recall": {
          // The memo is stored before the sleep, so only the look-back can find it.
          const mid = `${key}:${i}`;
          results.push(await step.sendEvent(named("memo"), { name: "sim/memo", data: { mid } }));
          results.push(await step.sleep(named("nap"), item.sleepMs));
          results.push(await step.waitForEvent(named("recall"), { event: "sim/memo", if: `async.data.mid == "${mid}"`, timeout: 1_000, lookback: "5m" }));
          // The run has received its memo: a second look-back must not hand it over again.
          results.push(await step.waitForEvent(named("recall-again"), { event: "sim/memo", if: `async.data.mid == "${mid}"`, timeout: 200, lookback: "5m" }));
          break;
        }
        case "wait":
          results.push(await step.waitForEvent(named("ping"), { event: "sim/ping", match: "data.key", timeout: item.timeoutMs }));
          break;
        case "callback": {
          const callback = await step.createCallback(named("link"), { timeout: item.timeoutMs });
          results.push(callback);
          results.push(await step.waitForCallback(named("reply"), callback));
          break;
        }
        case "signal":
          results.push(await step.waitForSignal(named("signal"), { signal: signalName(eventId, i), timeout: item.timeoutMs }));
          break;
        case "send":
          results.push(await step.sendEvent(named("send"), Array.from({ length: item.count }, (_, n) => ({ name: "sim/noise", data: { key, n } }))));
          break;
        case "invoke":
          results.push(await step.invoke(named("child"), { function: child, data: { key: `${key}/child`, program: item.program } }));
          break;
        case "bodyError":
          if (attempt < item.times) throw new Error(`the body failed outside any step (attempt ${attempt})`);
          break;
        case "fetch": {
          const stepId = idOf("call");
          const seen = await step
            .fetch({ id: "call", retries: 2 }, targetUrl(runId, stepId, item.ms))
            .then(async (response) => ({ status: response.status, body: await response.text() }))
            .catch((error: unknown) => {
              if (error instanceof StepError) return { caught: error.name };
              throw error;
            });
          results.push(seen);
          break;
        }
        case "selfCancel":
          results.push(...(await Promise.all([step.sendEvent(named("cancel-self"), { name: "sim/cancel", data: { key } }), step.sleep(named("pause"), 50)])));
          break;
      }
    }
    return results;
  };

  const onFailure = async ({ step, runId }: { step: Step; runId: string }) => {
    await step.run("noted", () => runId);
  };
  // Concurrency under the same faults: one step of a run at a time (its parallel branches wait
  // their turn), and a pool of 2 slots the interpreters and children share, fewer than the
  // executors' lanes, so invocations wait for slots across executors.
  const pool = { limit: 2, key: '"pool"', scope: "app" } as const;
  const interpreter = (retries: number) =>
    client.createFunction(
      {
        id: `sim-r${retries}`,
        triggers: [{ event: `sim/start-r${retries}` }],
        retries,
        // A cancel sent more than 3 s into the run (a long program's late selfCancel) is ignored.
        cancelOn: [{ event: "sim/cancel", match: "data.key", timeout: "3s" }],
        onFailure,
        concurrency: [{ limit: 1, key: "event.data.key" }, pool],
        // Runs of sim-r0 are queued 5 s ahead of sim-r2's: first invocations in the past, claimed first.
        priority: { run: retries === 0 ? "5" : "0" },
        // sim-r0 answers each invocation with the one step it ran, which the executor commits
        // under the invocation's lease and invokes again under the same job: that fence, under
        // the same faults as the checkpoints of sim-r2.
        ...(retries === 0 && { checkpointing: false }),
      },
      async ({ event, step, runId, attempt, publish }) => {
        const data = event.data as { key: string; program: Item[] };
        return { results: await interpret(data.program, step, runId, data.key, attempt, event.id, publish) };
      },
    );
  // Children are cancelled 3 s after they start: a cancel racing their steps, sleeps and checkpoints.
  const child = client.createFunction({ id: "sim-child", triggers: [], retries: 2, timeouts: { finish: "3s" }, concurrency: [{ limit: 2 }, pool] }, async ({ event, step, runId, attempt, publish }) => {
    const data = event.data as { key: string; program: Item[] };
    return { results: await interpret(data.program, step, runId, data.key, attempt, event.id, publish) };
  });
  // Throttled: a burst of questions is answered no faster than the throttle allows (so some
  // answers come after their wait timed out, as they may).
  const responder = client.createFunction({ id: "sim-responder", triggers: [{ event: "sim/question" }], retries: 2, throttle: SIM_THROTTLE }, async ({ event, step }) => {
    const data = event.data as { qid: string; delayMs: number };
    if (data.delayMs > 0) await step.sleep("think", data.delayMs);
    await step.sendEvent("reply", { name: "sim/answer", data: { qid: data.qid } });
  });

  // A cron trigger under the same faults: one run per tick, and its chain of ticks never lost.
  // Every 3 s, so the idle check at the end sees at most one tick; rate-limited to one run per
  // 5 s, so some ticks' runs are skipped.
  // A singleton too: a tick whose run of the tick before is still live (slowed by faults) is skipped.
  const ticker = client.createFunction({ id: "sim-tick", triggers: [{ cron: SIM_CRON }], retries: 2, rateLimit: { limit: 1, period: "5s" }, singleton: { mode: "skip" } }, async ({ event, step }) =>
    step.run("tick", () => event.data.scheduledAt),
  );

  // The noise a program sends (1 to 3 events, one key) under an idempotency key: one run per key.
  const deduped = client.createFunction({ id: "sim-idem", triggers: [{ event: "sim/noise" }], idempotency: "event.data.key", retries: 2 }, async ({ event, step }) =>
    step.run("once", () => (event.data as { key: string }).key),
  );

  // The same noise, debounced per key: a burst of one send (one transaction) or of several sends
  // of a program runs once, with its last event, unless a timeout or the first run's claim came between.
  const debounced = client.createFunction(
    { id: "sim-debounce", triggers: [{ event: "sim/noise" }], debounce: SIM_DEBOUNCE, retries: 2 },
    async ({ event, step }) => step.run("latest", () => (event.data as { n: number }).n),
  );

  // And batched, all keys together: every program's sends meet on one open batch, across executors.
  const batched = client.createFunction({ id: "sim-batch", triggers: [{ event: "sim/noise" }], batchEvents: SIM_BATCH, retries: 2 }, async ({ events, step }) =>
    step.run("got", () => events.map((event) => event.id)),
  );

  const functions = [interpreter(0), interpreter(2), child, responder, ticker, deduped, debounced, batched];
  return { functions, handler: serve({ client, functions }) };
}
