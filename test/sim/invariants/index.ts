/**
 * The promises, checked after a schedule against what the store holds and what the ledger saw.
 * Each broken promise is one line naming the run and step, so a failure reads as a bug report.
 * The checks live by idea: lifecycle.ts (1, 2, 7, 8, 9), step-bodies.ts (3, 4, 5, 11, 18),
 * waits.ts (6), idle.ts (10), starts.ts (12, 13, 16, 17), limits.ts (14, 15).
 *
 * 1. Every run ends (or waits, with the job that will wake it).
 * 2. A step's result is committed at most once and never overwritten; nothing of a run changes
 *    after it ended (audit triggers in the store).
 * 3. A step body runs more than once only when a crash, a stall past the lease or a lost answer
 *    happened while it ran (every extra execution is counted by its cause).
 * 4. No invocation is built from a state read after its run's end was acknowledged, and no
 *    step body starts in an invocation after the executor refused one of its checkpoints.
 * 5. `retries` bounds the attempts of every step (its own, `step.run({ id, retries })`, or
 *    its function's) and of every function body.
 * 6. A wait resolves to a matching event, or to null only when none arrived in time; never both.
 *    A wait with a look-back finds the event its run stored before the wait began, and never
 *    one the run received already. A signal resumes exactly the one wait it names, is stored
 *    only then, and is refused (404) only when its run was not waiting throughout the send. A
 *    callback URL takes one POST, and its wait resolves to that POST.
 * 7. onFailure runs exactly once for each failed run, and for no other.
 * 8. No acknowledged event is lost: each start event has its one run.
 * 9. A completed run returned exactly the values the store holds for its steps.
 * 10. The executors idle when nothing is due, and stop within their grace period.
 * 12. A cron tick starts at most one run, and the function's chain of ticks survives every
 *     fault: exactly one tick is queued for it at the end. A run skipped by its rate limit ran
 *     nothing and holds no job.
 * 13. An idempotency key starts exactly one run: every key of the events sent has its run, and
 *     no key has two.
 * 11. No step body after a sleep starts before the sleep's due time (whatever the executors'
 *     clocks say: the store's clock judges due times).
 * 14. No more invocations of a concurrency key are out at once than its limit, across every
 *     executor, unless a crash or stall (a lease that ran out) excuses it.
 * 15. A throttled function starts no faster than its throttle: in any period, at most its limit
 *     plus its burst (and one for the way to the app), unless an executor stalled or crashed then.
 * 16. A debounced event is never lost and never run twice: every event of a key has its one run;
 *     a run skipped by the debounce was never sent to the app and names the run of a later event
 *     of its key that replaced it; the run of a key's last event is not skipped.
 * 17. A batched event is in exactly one batch; a batch holds at most its size, no event joins it
 *     after its run went to the app, and a completed batch run's handler got exactly its events,
 *     in order of arrival.
 * 18. Every execution of a step's code is told the step's one idempotency key and an attempt
 *     within the step's retries.
 * 19. What a run published is stored numbered 1, 2, 3, … without gaps, each message once, and
 *     each from an execution that happened (messages.ts).
 * 20. A run's end stops its `step.fetch` requests within a bound (fetches.ts).
 * 21. A run that started on the first version's deployment goes elsewhere only once that
 *     deployment was deleted (deploys.ts).
 */
import type { SqlClient } from "@stepwise/store-postgres";
import type { Played } from "../world.ts";
import { checkDeploys } from "./deploys.ts";
import { checkFetches } from "./fetches.ts";
import { checkIdle } from "./idle.ts";
import { checkLifecycle } from "./lifecycle.ts";
import { checkLimits } from "./limits.ts";
import { checkMessages } from "./messages.ts";
import { loadScene } from "./scene.ts";
import { checkStarts } from "./starts.ts";
import { checkStepBodies } from "./step-bodies.ts";
import { checkWaits } from "./waits.ts";

export interface Checked {
  violations: string[];
  runs: number;
  steps: number;
  invocations: number;
  /** Step bodies that ran more than their committed once, by cause. */
  extraBodies: Map<string, number>;
  /** Messages the runs published that the store holds. */
  messages: number;
  /** Requests made for the runs' fetch steps, and how many of them a run's end stopped. */
  fetches: { calls: number; dropped: number };
}

export async function check(sql: SqlClient, played: Played): Promise<Checked> {
  const violations: string[] = [];
  const scene = await loadScene(sql, played, (line) => violations.push(line));
  await checkLifecycle(scene);
  const extraBodies = await checkStepBodies(scene);
  await checkWaits(scene);
  await checkStarts(scene);
  await checkLimits(scene);
  await checkIdle(scene);
  const messages = await checkMessages(scene);
  const fetches = checkFetches(scene);
  checkDeploys(scene);
  const invocations = played.ledger.invocations.filter((inv) => scene.runs.has(inv.runId)).length;
  return { violations, runs: scene.runs.size, steps: scene.steps.length, invocations, extraBodies, messages, fetches };
}
