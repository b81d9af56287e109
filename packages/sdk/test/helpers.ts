/** Builders for invocations, so each test states only the stored steps it cares about. */
import { PROTOCOL_VERSION, requestTarget, sign, type InvokeRequest, type StepKind, type StoredStep, type WireEvent } from "@stepwise/protocol";
import { execute, type InvokeResult } from "../src/execution.ts";
import type { RunnableFunction } from "../src/function.ts";

export const TRIGGER: WireEvent = { id: "evt-1", name: "order/created", data: { orderId: "o1" }, ts: 1_700_000_000_000 };

/** An invocation of run `run-1` with `steps` stored. */
export function request(steps: StoredStep[] = [], extra: Partial<InvokeRequest> = {}): InvokeRequest {
  return {
    version: PROTOCOL_VERSION,
    run: { id: "run-1", appId: "shop", functionId: "fulfil", attempt: 0 },
    event: TRIGGER,
    events: [TRIGGER],
    steps,
    ...extra,
  };
}

/** A stored step at `position`; its ID is its name unless given. */
export function done(position: number, name: string, output: unknown, kind: StepKind = "run", id = name): StoredStep {
  return { id, name, kind, position, status: "completed", output };
}

export function failed(position: number, name: string, error: { name: string; message: string }, kind: StepKind = "run"): StoredStep {
  return { id: name, name, kind, position, status: "failed", error };
}

export function pending(position: number, name: string, kind: StepKind = "run", id = name): StoredStep {
  return { id, name, kind, position, status: "pending" };
}

/** The signature header the executor sends with `body` POSTed to `url` (its path and `?fnId=` included). */
export function signInvocation(key: string, url: string, body: string, nowMs?: number): Promise<string> {
  return sign(key, { method: "POST", target: requestTarget(url), body }, nowMs);
}

/** Headers of a GET signed as the executor's discovery signs it. */
export async function signedGet(key: string, url: string): Promise<Record<string, string>> {
  return { "x-stepwise-signature": await sign(key, { method: "GET", target: requestTarget(url), body: "" }) };
}

/** Runs one invocation of `fn`. */
export function invoke(fn: RunnableFunction, req: InvokeRequest = request()): Promise<InvokeResult> {
  return execute(fn, req);
}

/** A logger that records lines instead of printing them. */
export function recordingLogger(): { lines: string[]; logger: Record<"debug" | "info" | "warn" | "error", (...args: unknown[]) => void> } {
  const lines: string[] = [];
  const record = (level: string) => (...args: unknown[]) => void lines.push(`${level} ${args.map(String).join(" ")}`);
  return { lines, logger: { debug: record("debug"), info: record("info"), warn: record("warn"), error: record("error") } };
}
