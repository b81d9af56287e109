/**
 * Step bodies against what was committed: a body runs again only when a fault excuses it, never
 * after its run's end or a refused checkpoint, never before a sleep before it is due, within its
 * retries, and always told its step's idempotency key.
 */
import { createHash } from "node:crypto";
import { functionRetries, json, localId, retriesOf, type Scene } from "./scene.ts";

/** The key the SDK documents for a step (`StepRunContext.idempotencyKey`), worked out independently. */
const stepIdempotencyKey = (runId: string, stepId: string) => `stepwise-${createHash("sha256").update(`${runId}\u0000${stepId}`).digest("hex")}`;

/** Returns the step bodies that ran more than their committed once, by the fault that excuses them. */
export async function checkStepBodies(scene: Scene): Promise<Map<string, number>> {
  const { played, ledger, runs, stepsByRun, bodiesByStep, fail } = scene;
  // A checkpoint is told to its invocation by its token: one from none the ledger knows would escape the checks below.
  for (const { runId, stepId } of ledger.unattributedCheckpoints) fail(`a checkpoint of step "${stepId}" of run ${runId} came from no invocation sent with its token`);
  // 3 and 4. Step bodies against what was committed.
  const extraBodies = new Map<string, number>();
  for (const [key, bodies] of bodiesByStep) {
    const [runId, stepId] = key.split("\n") as [string, string];
    const run = runs.get(runId)!;
    const step = (stepsByRun.get(runId) ?? []).find((s) => s.id === stepId);
    const output = step?.status === "completed" ? (json(step.output) as { token?: string } | undefined) : undefined;
    const committed = output?.token;
    let unexcused = 0;
    const returned = bodies.filter((b) => b.token !== undefined);
    for (const body of returned) {
      if (body.token === committed) continue;
      // One uncommitted execution is no repeat when nothing was committed (the run ended first).
      if (committed === undefined && body === returned[0]) continue;
      const excuse = ledger.excuse(body);
      if (excuse) extraBodies.set(excuse, (extraBodies.get(excuse) ?? 0) + 1);
      else {
        unexcused++;
        const story = bodies.map((b) => {
          const inv = ledger.invocationById(b.invocation);
          return `${b.token ?? "threw"}@inv${b.invocation}(${inv?.executor} ${inv?.targetStep ?? "-"} ${inv?.fault}/${inv?.delivery} +${inv ? inv.sentAt - played.startedAt : "?"}ms)`;
        });
        const rel = (at: number | undefined) => (at === undefined ? "-" : `+${at - played.startedAt}`);
        const events = [
          ...[...ledger.crashes].map(([e, at]) => `crash ${e} ${rel(at)}`),
          ...[...ledger.stops].map(([e, at]) => `stop ${e} ${rel(at)}`),
          ...[...ledger.stalls].flatMap(([e, list]) => list.map(([from, to]) => `stall ${e} ${rel(from)}..${rel(to)}`)),
          ...ledger.leaseLosses.filter((l) => l.runId === runId).map((l) => `lease lost ${l.executor} ${rel(l.at)}`),
        ];
        const runStory = ledger.invocations.filter((inv) => inv.runId === runId).map((inv) => `inv${inv.id}:${inv.executor}:${inv.targetStep ?? "-"}:${inv.fault}:+${inv.sentAt - played.startedAt}`);
        fail(
          `step "${stepId}" of run ${runId} (${localId(run)}): a body ran again with no crash, stall or lost answer to excuse it ` +
            `(committed ${committed ?? "nothing"}, step ${step?.status} attempts ${step?.attempts}; bodies ${story.join(", ")}; invocations ${runStory.join(" ")}; ${events.join(", ")})`,
        );
      }
    }
    const retries = retriesOf(run, bodies);
    const attempts = bodies.filter((b) => !ledger.excuse(b)).length;
    if (attempts - unexcused > retries + 1) fail(`step "${stepId}" of run ${runId}: ${attempts} attempts, but retries is ${retries}`);
    const ended = ledger.endsAcked.get(runId);
    // 11. Steps after a sleep (later in the run: every program awaits its sleeps) start after its due time.
    const sleepsBefore = step ? (stepsByRun.get(runId) ?? []).filter((s) => s.kind === "sleep" && s.wake_at && Number(s.position) < Number(step.position)) : [];
    for (const sleep of sleepsBefore) {
      const dueAt = new Date(String(sleep.wake_at)).getTime();
      const early = bodies.find((body) => body.at < dueAt);
      if (early) fail(`step "${stepId}" of run ${runId} (${localId(run)}) started ${dueAt - early.at} ms before the end of sleep "${sleep.id}", which comes before it`);
    }
    // 18. Every execution of a step is told the step's one idempotency key, and an attempt
    //     within its retries (an invocation that failed before the app ran the step counts too).
    const idempotencyKey = stepIdempotencyKey(runId, stepId);
    for (const [n, body] of bodies.entries()) {
      if (body.context.idempotencyKey !== idempotencyKey) fail(`step "${stepId}" of run ${runId}: execution ${n + 1} got the idempotency key ${body.context.idempotencyKey}, not ${idempotencyKey}`);
      if (body.context.attempt > retries) fail(`step "${stepId}" of run ${runId}: execution ${n + 1} was told attempt ${body.context.attempt} (retries ${retries})`);
    }
    for (const body of bodies) {
      const refused = ledger.refusedCheckpoints.find((r) => r.invocation === body.invocation && r.at < body.at);
      if (refused) fail(`step "${stepId}" of run ${runId} ran in invocation ${body.invocation} ${body.at - refused.at} ms after ${refused.how === "refused" ? "the executor refused" : "the app heard the failure of"} its checkpoint of "${refused.stepId}"`);
      const invocation = ledger.invocationById(body.invocation);
      if (ended !== undefined && invocation?.readAt !== undefined && invocation.readAt > ended) {
        fail(`step "${stepId}" of run ${runId} ran in invocation ${invocation.id}, built from a state read ${invocation.readAt - ended} ms after the run's end was acknowledged`);
      }
    }
  }

  // 5. Stored attempts within retries.
  for (const run of runs.values()) {
    const retries = functionRetries(run);
    if (Number(run.attempt) > retries) fail(`run ${run.id} (${localId(run)}): body attempt ${run.attempt}, but retries is ${retries}`);
    for (const step of stepsByRun.get(String(run.id)) ?? []) {
      const bodies = bodiesByStep.get(`${run.id}\n${step.id}`) ?? [];
      const stepRetries = retriesOf(run, bodies, step);
      if (Number(step.attempts) > stepRetries + 1) {
        fail(`step "${step.id}" of run ${run.id} (${localId(run)}): ${step.attempts} attempts stored, but retries is ${stepRetries} (policy ${step.retry_policy ?? "none"}, ${bodies.length} bodies ran)`);
      }
    }
  }
  return extraBodies;
}
