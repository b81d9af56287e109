/**
 * The other side of the programs' `step.fetch` calls, reached through an executor's faulty
 * network: it answers after the `ms` its URL asks for, unless the executor drops the request
 * first (its run ended). Every request is written to the ledger as it saw it.
 */
import type { Ledger } from "./ledger.ts";

export const SIM_TARGET = "http://target.sim";

/** The URL of the request for `stepId` of `runId`, answered after `ms`. */
export const targetUrl = (runId: string, stepId: string, ms: number) => `${SIM_TARGET}/call?run=${encodeURIComponent(runId)}&step=${encodeURIComponent(stepId)}&ms=${ms}`;

export function callTarget(ledger: Ledger, executor: string, url: string, signal: AbortSignal | null | undefined): Promise<Response> {
  const query = new URL(url).searchParams;
  const ms = Number(query.get("ms"));
  const call = { executor, runId: query.get("run") ?? "", stepId: query.get("step") ?? "", at: Date.now() } as Ledger["fetchCalls"][number];
  ledger.fetchCalls.push(call);
  return new Promise<Response>((resolve, reject) => {
    const timer = setTimeout(() => {
      call.endedAt = Date.now();
      resolve(new Response(JSON.stringify({ ms }), { status: 200, headers: { "content-type": "application/json" } }));
    }, ms);
    const drop = () => {
      clearTimeout(timer);
      call.endedAt = Date.now();
      call.dropped = true;
      reject(signal?.reason);
    };
    if (signal?.aborted) return drop();
    signal?.addEventListener("abort", drop, { once: true });
  });
}
