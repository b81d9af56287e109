/**
 * CoalescedCalls, the background sender under freed-slot notices and Redis's deletions: what a
 * backlog is cut into, and a sender that fails in every way it can.
 */
import { describe, expect, it } from "vitest";
import { CoalescedCalls } from "../src/coalesced-calls.ts";

describe("CoalescedCalls", () => {
  it("sends a backlog in calls of at most 1,000, and settles once the last of them landed", async () => {
    const calls: number[][] = [];
    let answer!: () => void;
    let slow: Promise<void> | undefined = new Promise<void>((resolve) => (answer = resolve));
    const sender = new CoalescedCalls<number>(async (items) => {
      calls.push(items);
      await slow;
    });
    sender.add([0]);
    // Piled up while the first call is on its way (Redis out of reach, say).
    sender.add(Array.from({ length: 2_500 }, (_, i) => i + 1));
    const settled = sender.settled();
    slow = undefined;
    answer();
    await settled;
    expect(calls.map((items) => items.length)).toEqual([1, 1_000, 1_000, 500]);
    expect(calls.flat()).toEqual(Array.from({ length: 2_501 }, (_, i) => i));
  });

  it("settles once the items added before it are sent, however many keep coming after", async () => {
    const landing: Array<() => void> = [];
    const sender = new CoalescedCalls<number>(() => new Promise<void>((resolve) => landing.push(resolve)));
    let next = 0;
    const batch = (n: number) => Array.from({ length: n }, () => next++);
    sender.add(batch(1));
    sender.add(batch(1_500));
    let settled = false;
    void sender.settled().then(() => (settled = true));
    // Calls go [0], then 1-1,000, then 1,001-1,500 with 500 newer ones: the third landing settles it.
    for (let call = 1; call <= 3; call++) {
      expect(settled).toBe(false);
      sender.add(batch(1_500)); // more keeps coming while each call is on its way
      landing.shift()!();
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    expect(settled).toBe(true);
  });

  it("goes on after a sender that throws, at once or later, and still settles", async () => {
    const sent: string[][] = [];
    let calls = 0;
    const sender = new CoalescedCalls<string>((items) => {
      calls++;
      if (calls === 1) throw new Error("thrown before any await");
      if (calls === 2) return Promise.reject(new Error("refused"));
      sent.push(items);
      return Promise.resolve();
    });
    sender.add(["a"]);
    await sender.settled();
    sender.add(["b"]);
    await sender.settled();
    sender.add(["c"]);
    await sender.settled();
    expect(calls).toBe(3);
    expect(sent).toEqual([["c"]]);
  });

  it("reports each failed call with its items, and goes on when the report itself throws", async () => {
    const reported: string[][] = [];
    const sent: string[][] = [];
    const sender = new CoalescedCalls<string>(
      async (items) => {
        if (items.includes("x")) throw new Error("refused");
        sent.push(items);
      },
      (error, items) => {
        reported.push(items);
        throw new Error(`the log is gone too: ${(error as Error).message}`);
      },
    );
    sender.add(["x"]);
    await sender.settled();
    sender.add(["y"]);
    await sender.settled();
    expect(reported).toEqual([["x"]]);
    expect(sent).toEqual([["y"]]);
  });
});
