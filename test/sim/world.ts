/**
 * One schedule played against real stores: executors (each with its own faulty view of the
 * store, its own faulty network to the app and its own skewed clock) are started, the runs are
 * sent in waves, faults are injected during the fault window, crashed executors are restarted,
 * and once every run has ended (or the deadline passed) the executors must idle and stop within
 * their grace period. What happened is left in the ledger and the store for the checker.
 */
import { createApi } from "@stepwise/api";
import { Executor, InputError, MIN_DEPLOYMENT_GONE_AFTER_MS, type Logger } from "@stepwise/engine";
import { DEV_SIGNING_KEY } from "@stepwise/protocol";
import { IdleBaseline } from "../support/idle-baseline.ts";
import { SIM_CRON_PERIOD_MS, simApp } from "./app.ts";
import { FaultyStore } from "./faulty-store.ts";
import { Ledger } from "./ledger.ts";
import { faultyFetch } from "./network.ts";
import { signalName, type Item, type SignalItem } from "./program.ts";
import { CONCURRENCY, EXECUTORS, LEASE_MS, type Schedule } from "./schedule.ts";
import type { Topology } from "./topologies.ts";

/** How long a graceful stop may take: the grace period given, plus a margin for the last commits. */
export const STOP_GRACE_MS = 1_000;
const QUIESCE_DEADLINE_MS = 90_000;
/** Where the app's first version is deployed (see `deployed` below). */
/** The version the app first registers as, and its deployment's host (versioned deploys, below). */
export const FIRST_VERSION = "d1";
export const FIRST_DEPLOYMENT_HOST = `${FIRST_VERSION}.sim.app`;
/**
 * How long a deployment refuses connections before its runs move: the shortest the executor
 * takes, so a deletion that refuses moves them within the schedule, and longer than the random
 * refusals of the faulty network come one after another for one run (which, before, moved runs
 * for good).
 */
const DEPLOYMENT_GONE_AFTER_MS = MIN_DEPLOYMENT_GONE_AFTER_MS;

export interface Played {
  ledger: Ledger;
  /** The start events the executors acknowledged, with their plans. */
  acked: Array<{ eventId: string; key: string; fn: "r0" | "r2"; program: Item[] }>;
  startedAt: number;
  quiesced: boolean;
  /** Store calls that claimed jobs, across executors, while nothing was due (1.5 s), and how many found any. */
  idleClaims: number;
  idleFruitfulClaims: number;
  /** CPU of this process while idle, as a share of one core. */
  idleCpu: number;
  /** CPU of the reference poller over the same window, as a share of one core. */
  idleReferenceCpu: number;
  /** How long each graceful stop took. */
  stops: number[];
  executorLines: string[];
}

interface Slot {
  index: number;
  generation: number;
  store: FaultyStore;
  executor: Executor;
  restarting: boolean;
  /** Stopped: like an exited process, it sends nothing more. */
  halted: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function play(topology: Topology, schedule: Schedule): Promise<Played> {
  const ledger = new Ledger();
  const { faults } = schedule;
  let faultsOn = true;
  // Checkpoints reach any live executor's real API: the fence is in the store, not in the process that invoked.
  const apis = new Map<Executor, ReturnType<typeof createApi>>();
  const apiOf = (executor: Executor) => apis.get(executor) ?? apis.set(executor, createApi({ executor, dev: true, signingKeys: [DEV_SIGNING_KEY] })).get(executor)!;
  let checkpoints = 0;
  const app = simApp(ledger, {
    seed: schedule.seed,
    rate: () => (faultsOn ? faults.networkRate : 0),
    toExecutor: async (request) => {
      const live = slots.filter((s) => !s.halted && !s.restarting);
      const slot = live[checkpoints++ % Math.max(1, live.length)];
      if (!slot) throw new TypeError("fetch failed", { cause: new Error("no executor up") });
      return apiOf(slot.executor).fetch(request);
    },
  });
  const lines: string[] = [];
  const log: Logger = { info: () => {}, warn: (line) => lines.push(`WARN ${line}`), error: (line) => lines.push(`ERROR ${line}`) };
  const stops: number[] = [];

  const startExecutor = async (index: number, generation: number): Promise<Slot> => {
    const name = `s${schedule.index}-e${index}-g${generation}`;
    const store = new FaultyStore(topology.store, name, ledger);
    const slot = { index, generation, store, restarting: false, halted: false } as Slot;
    const skew = faults.skewMs[index] ?? 0;
    const executor = new Executor({
      store,
      signingKey: DEV_SIGNING_KEY,
      // Callback URLs are posted to through the executors themselves (`receiveCallback`): any base does.
      publicUrl: "http://executor.sim",
      workerId: name,
      concurrency: CONCURRENCY,
      leaseMs: LEASE_MS,
      invokeTimeoutMs: 500,
      deploymentGoneAfterMs: DEPLOYMENT_GONE_AFTER_MS,
      // An older instance's refusal of the compact form is remembered this long: a schedule lasts
      // seconds, and most invocations must still go compact, the form a user's executor sends.
      fullFormForMs: 1_000,
      maintenanceMs: 500,
      pollMs: 200,
      registryRefreshMs: 60_000,
      backoff: { initialMs: 20, maxMs: 200 },
      // A budget of a few small outputs: later ones are left out of requests and read back, on the faulty path.
      limits: { maxRequestOutputBytes: 120 },
      clock: { now: () => Date.now() + skew },
      log,
      fetch: faultyFetch(name, {
        seed: schedule.seed,
        ledger,
        app: app.handler,
        rate: () => (faultsOn ? faults.networkRate : 0),
        gone: () => store.dead || slot.halted,
        deleted: (url) => (new URL(url).host === FIRST_DEPLOYMENT_HOST ? firstDeploymentDeleted : null),
      }),
    });
    slot.executor = executor;
    await executor.start();
    return slot;
  };

  // Versioned deploys: the app registers as version d1, served at its own deployment URL (every
  // host reaches the same handler); a redeploy registers d2 at another, and d1's may be deleted.
  const description = (await (await app.handler(new Request("http://sim.app/api/durable"))).json()) as Record<string, unknown>;
  const deployed = (version: string) => ({ ...description, version, deploymentUrl: `http://${version}.sim.app/api/durable` });
  let firstDeploymentDeleted: "404" | "refuse" | null = null;
  const first = await startExecutor(0, 0);
  await first.executor.syncApp(deployed(FIRST_VERSION));
  const slots: Slot[] = [first];
  for (let i = 1; i < EXECUTORS; i++) slots.push(await startExecutor(i, 0));

  /** A crashed executor is replaced (a new process, a new worker name) a moment later. */
  const replace = async (slot: Slot, graceful: boolean) => {
    if (slot.restarting) return;
    slot.restarting = true;
    const started = Date.now();
    if (graceful) ledger.stopped(slot.store.name);
    await slot.executor.stop(graceful ? STOP_GRACE_MS : 0).catch(() => {});
    slot.halted = true;
    if (graceful) stops.push(Date.now() - started);
    await sleep(100);
    slots[slot.index] = await startExecutor(slot.index, slot.generation + 1);
  };
  const watchdog = setInterval(() => {
    for (const slot of slots) if (slot.store.dead && !slot.restarting) void replace(slot, false);
  }, 50);

  /** Like a client: retries on another executor until one acknowledges. */
  const withExecutor = async <T>(fn: (executor: Executor) => Promise<T>): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      const live = slots.filter((s) => !s.store.dead && !s.restarting);
      const slot = live[attempt % Math.max(1, live.length)];
      try {
        if (!slot) throw new Error("no executor up");
        return await fn(slot.executor);
      } catch (error) {
        if (attempt > 200) throw error;
        await sleep(50);
      }
    }
  };

  /**
   * Sends a signal as its senders would, each under an ID of its own, retried on another
   * executor when one fails (as a sender retries after a lost answer). A 404 is an answer.
   */
  const sendOnce = async (signal: string, id: string) => {
    const from = Date.now();
    const answer = await withExecutor((e) => e.sendSignal({ signal, data: { id }, id }).catch((error: unknown) => (error instanceof InputError && error.status === 404 ? null : Promise.reject(error))));
    const outcome = answer === null ? "refused" : answer.duplicate ? "duplicate" : "delivered";
    ledger.signals.push({ signal, id, from, to: Date.now(), outcome, ...(answer?.runId && { runId: answer.runId, stepId: answer.stepId }) });
    return outcome;
  };
  const sendSignals = (signal: string, item: SignalItem) =>
    Promise.all(
      Array.from({ length: item.senders }, async (_, sender) => {
        const id = `${signal}#${sender}`;
        if ((await sendOnce(signal, id)) !== "refused" && item.resend) await sendOnce(signal, id);
      }),
    );

  /**
   * POSTs to the callback URL the `index`-th item of the run of `eventId` created, once the run
   * has it (as a person who got the email would), `posts` times at once; each POST is retried
   * on another executor when one fails, as a webhook provider retries.
   */
  const postCallbacks = async (eventId: string, program: Item[], index: number, posts: number) => {
    const nth = program.slice(0, index).filter((item) => item.t === "callback").length;
    const stepId = nth === 0 ? "link" : `link:${nth}`;
    let found: { runId: string; url: string } | undefined;
    for (let tries = 0; tries < 80 && !found; tries++) {
      found = await withExecutor(async (e) => {
        const [run] = await e.listRunsForEvent(eventId);
        const step = run && (await e.getRun(run.id))?.steps.find((s) => s.id === stepId && s.status === "completed");
        return run && step ? { runId: run.id, url: (step.output as { url: string }).url } : undefined;
      });
      if (!found) await sleep(50);
    }
    if (!found) return;
    const { runId, url } = found;
    const token = url.slice(url.lastIndexOf("/") + 1);
    await Promise.all(
      Array.from({ length: posts }, async (_, post) => {
        const body = { post };
        const from = Date.now();
        const status = await withExecutor((e) =>
          e.receiveCallback(token, { body, headers: [["content-type", "application/json"]] }).then(
            () => 200,
            (error: unknown) => (error instanceof InputError ? error.status : Promise.reject(error)),
          ),
        );
        ledger.callbackPosts.push({ runId, stepId, body, from, to: Date.now(), status });
      }),
    );
  };

  const startedAt = Date.now();
  const timers: Array<ReturnType<typeof setTimeout>> = [];
  const at = (ms: number, fn: () => unknown) => timers.push(setTimeout(() => void Promise.resolve(fn()).catch(() => {}), ms));
  for (const crash of faults.crashes) at(crash.atMs, () => slots[crash.executor]?.store.crashAfter(crash.afterCalls));
  for (const stall of faults.stalls) at(stall.atMs, () => slots[stall.executor]?.store.stallAfter(stall.afterCalls, stall.forMs));
  for (const flush of faults.flushes) at(flush, async () => (await topology.flushQueue()) && ledger.fault("redis flush"));
  for (const restart of faults.restarts) at(restart.atMs, () => {
    const slot = slots[restart.executor];
    if (slot && !slot.store.dead && !slot.restarting) {
      ledger.fault("graceful restart");
      return replace(slot, true);
    }
  });
  const redeploy = faults.redeploy;
  if (redeploy) {
    at(redeploy.atMs, async () => {
      await withExecutor((e) => e.syncApp(deployed("d2")));
      ledger.fault("redeploy");
      await sleep(redeploy.deleteAfterMs);
      firstDeploymentDeleted = redeploy.deletedAs;
      ledger.firstDeploymentDeletedAt = Date.now();
      ledger.fault(`first deployment deleted (${redeploy.deletedAs})`);
    });
  }
  at(faults.windowMs, () => (faultsOn = false));

  const acked: Played["acked"] = [];
  const waveSize = Math.ceil(schedule.runs.length / schedule.waves);
  const sends: Array<Promise<void>> = [];
  for (let wave = 0; wave < schedule.waves; wave++) {
    const plans = schedule.runs.slice(wave * waveSize, (wave + 1) * waveSize);
    if (plans.length === 0) continue;
    sends.push(
      (async () => {
        await sleep(wave * 250);
        const events = plans.map((plan) => ({ name: `sim/start-${plan.fn}`, data: { key: plan.key, program: plan.program } }));
        const { ids } = await withExecutor((executor) => executor.sendEvents(events));
        plans.forEach((plan, n) => {
          acked.push({ eventId: ids[n]!, key: plan.key, fn: plan.fn, program: plan.program });
          for (const [index, item] of plan.program.entries()) {
            if (item.t === "wait" && item.pingAfterMs !== undefined) at(item.pingAfterMs, () => withExecutor((e) => e.sendEvents({ name: "sim/ping", data: { key: plan.key } })));
            if (item.t === "signal" && item.sendAfterMs !== undefined) at(item.sendAfterMs, () => sendSignals(signalName(ids[n]!, index), item));
            if (item.t === "callback" && item.postAfterMs !== undefined) at(item.postAfterMs, () => postCallbacks(ids[n]!, plan.program, index, item.posts));
          }
          const pause = plan.pause;
          if (pause) {
            at(pause.afterMs, async () => {
              // A run that ended first cannot be paused or resumed (409): nothing to do then.
              const ended = (error: unknown) => (error instanceof InputError ? null : Promise.reject(error));
              const paused = await withExecutor(async (e) => {
                const [run] = await e.listRunsForEvent(ids[n]!);
                return run ? e.pauseRun(run.id).catch(ended) : null;
              });
              if (!paused) return;
              ledger.paused(paused.id);
              await sleep(pause.forMs);
              await withExecutor((e) => e.resumeRun(paused.id).catch(ended));
            });
          }
          const cancel = plan.cancel;
          if (cancel?.via === "event") at(cancel.afterMs, () => withExecutor((e) => e.sendEvents({ name: "sim/cancel", data: { key: plan.key } })));
          if (cancel?.via === "api") {
            at(cancel.afterMs, () =>
              withExecutor(async (e) => {
                const [run] = await e.listRunsForEvent(ids[n]!);
                if (run) await e.cancelRun(run.id, "cancelled by the simulation");
              }),
            );
          }
        });
      })(),
    );
  }
  await Promise.all(sends);
  while (Date.now() - startedAt < faults.windowMs) await sleep(50);

  // Quiesce: no more faults; every run must end.
  let quiesced = false;
  const deadline = Date.now() + QUIESCE_DEADLINE_MS;
  while (Date.now() < deadline) {
    const [row] = await topology.sql.query<{ n: number | string }>("SELECT count(*) AS n FROM runs WHERE status NOT IN ('completed', 'failed', 'cancelled', 'skipped')");
    if (Number(row?.n) === 0 && slots.every((s) => !s.restarting)) {
      quiesced = true;
      break;
    }
    await sleep(100);
  }
  for (const timer of timers) clearTimeout(timer);
  clearInterval(watchdog);
  while (slots.some((s) => s.restarting)) await sleep(50);

  // Idle: nothing is due, so the executors only poll. The cron trigger ticks every 3 s (at whole
  // multiples of 3 s), so the 1.5 s window starts 600 ms after a tick, when its run is done and
  // the next is still 900 ms away.
  // Beside the window, a reference poller (see idle-baseline.ts) measures what the machine makes
  // of a small job every 200 ms, so the check holds on a busy machine as on a quiet one.
  const baseline = await IdleBaseline.start();
  await sleep(SIM_CRON_PERIOD_MS - (Date.now() % SIM_CRON_PERIOD_MS) + 600);
  const claimsBefore = slots.reduce((sum, s) => sum + s.store.claims, 0);
  const fruitfulBefore = slots.reduce((sum, s) => sum + s.store.fruitfulClaims, 0);
  const cpuBefore = process.cpuUsage();
  const endReference = await baseline.window();
  const idleFrom = Date.now();
  await sleep(1_500);
  const cpu = process.cpuUsage(cpuBefore);
  const idleCpu = (cpu.user + cpu.system) / 1_000 / (Date.now() - idleFrom);
  const idleReferenceCpu = await endReference();
  baseline.stop();
  const idleClaims = slots.reduce((sum, s) => sum + s.store.claims, 0) - claimsBefore;
  const idleFruitfulClaims = slots.reduce((sum, s) => sum + s.store.fruitfulClaims, 0) - fruitfulBefore;

  for (const slot of slots) {
    const started = Date.now();
    await slot.executor.stop(STOP_GRACE_MS);
    stops.push(Date.now() - started);
  }
  return { ledger, acked, startedAt, quiesced, idleClaims, idleFruitfulClaims, idleCpu, idleReferenceCpu, stops, executorLines: lines };
}
