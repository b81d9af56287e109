/**
 * Failures of the app's calls to the executor are logged once per kind per interval, with a
 * count of those left unsaid: an app pointed at the wrong executor URL would otherwise log a
 * line for every checkpointed step of every invocation.
 */
import { expect, it } from "vitest";
import { FailureNotices, NOTICE_INTERVAL_MS } from "../src/notices.ts";
import { checkpointerFor } from "../src/checkpointing.ts";
import { request } from "./helpers.ts";

const recording = () => {
  const warned: string[] = [];
  return { warned, log: { debug() {}, info() {}, warn: (line: unknown) => void warned.push(String(line)), error() {} } };
};

it("logs the first failure of a kind, stays quiet for the interval, then says how many it left out", () => {
  let now = 1_000_000;
  const { warned, log } = recording();
  const notices = new FailureNotices(log, () => now);
  notices.warn("checkpoint", "a");
  notices.warn("checkpoint", "b");
  notices.warn("stored outputs", "c");
  now += NOTICE_INTERVAL_MS - 1;
  notices.warn("checkpoint", "d");
  now += 1;
  notices.warn("checkpoint", "e");
  expect(warned).toEqual(["a", "c", "e (2 more like it since the last notice)"]);
});

it("says once, not per step, that checkpoints to an unreachable executor fail; each step still ends up in the answer", async () => {
  const { warned, log } = recording();
  const notices = new FailureNotices(log);
  let calls = 0;
  const transport = {
    fetch: (async () => {
      calls++;
      throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9"), { code: "ECONNREFUSED" }) });
    }) as typeof fetch,
    baseUrl: "http://127.0.0.1:9",
    signingKey: "k".repeat(32),
    notices,
  };
  const invocation = { ...request(), checkpoint: { token: "1.1.executor" } };
  for (let i = 0; i < 5; i++) {
    const checkpointer = checkpointerFor(invocation, 5_000, transport)!;
    expect(await checkpointer.commit({ op: "step-ran", id: `s${i}`, name: `s${i}`, position: i, output: i }, 1)).toBe(false);
  }
  expect(calls).toBe(5);
  expect(warned).toHaveLength(1);
  expect(warned[0]).toMatch(/checkpoint to http:\/\/127\.0\.0\.1:9\/api\/checkpoints failed \(fetch failed \(connect ECONNREFUSED 127\.0\.0\.1:9\)\); its result goes in the invocation's answer$/);
});
