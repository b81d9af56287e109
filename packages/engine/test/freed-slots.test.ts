/**
 * Notices of freed concurrency slots leave the lanes: one statement in flight at a time, the keys
 * freed meanwhile gathered into the next, the claim loop woken as each lands having made a key due.
 */
import { describe, expect, it } from "vitest";
import { FreedSlotNotices } from "../src/runtime/freed-slots.ts";

/** A queue whose notices land only when the test lets them, each making `madeDue` keys due. */
function heldQueue() {
  const sent: string[][] = [];
  const waiting: Array<(madeDue: number) => void> = [];
  return {
    sent,
    landNext: (madeDue = 1) => waiting.shift()?.(madeDue),
    queue: {
      slotsFreed(keys: string[]) {
        sent.push([...keys].sort());
        return new Promise<number>((resolve) => waiting.push(resolve));
      },
    },
  };
}

const ticks = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("FreedSlotNotices", () => {
  it("sends at once, and gathers what is freed while a notice is in flight into one more", async () => {
    const { sent, landNext, queue } = heldQueue();
    let landed = 0;
    const notices = new FreedSlotNotices(queue, () => landed++);
    notices.tell(["a"]);
    await ticks();
    expect(sent).toEqual([["a"]]);
    notices.tell(["b"]);
    notices.tell(["c", "b"]);
    notices.tell([]);
    await ticks();
    expect(sent).toEqual([["a"]]);
    landNext();
    await ticks();
    expect(sent).toEqual([["a"], ["b", "c"]]);
    expect(landed).toBe(1);
    let settled = false;
    void notices.settled().then(() => (settled = true));
    await ticks();
    expect(settled).toBe(false);
    landNext();
    await ticks();
    expect(settled).toBe(true);
    expect(landed).toBe(2);
  });

  it("wakes the claim loop only when a notice made a key due (most find nothing waiting)", async () => {
    const { sent, landNext, queue } = heldQueue();
    let landed = 0;
    const notices = new FreedSlotNotices(queue, () => landed++);
    notices.tell(["a"]);
    notices.tell(["b"]);
    await ticks();
    landNext(0);
    await ticks();
    expect(sent).toEqual([["a"], ["b"]]);
    expect(landed).toBe(0);
    landNext(1);
    await notices.settled();
    expect(landed).toBe(1);
  });

  it("goes on after a notice the store refused, and still wakes the claim loop", async () => {
    const sent: string[][] = [];
    let landed = 0;
    const notices = new FreedSlotNotices(
      {
        async slotsFreed(keys) {
          sent.push(keys);
          if (sent.length === 1) throw new Error("connection refused");
          return keys.length;
        },
      },
      () => landed++,
    );
    notices.tell(["a"]);
    notices.tell(["b"]);
    await notices.settled();
    notices.tell(["c"]);
    await notices.settled();
    expect(sent).toEqual([["a"], ["b"], ["c"]]);
    expect(landed).toBe(3);
  });

  it("sends keys told in the turn after a notice landed (the sender may just be finishing)", async () => {
    const sent: string[][] = [];
    const notices: FreedSlotNotices = new FreedSlotNotices(
      {
        async slotsFreed(keys) {
          sent.push(keys);
          return 1;
        },
      },
      () => {
        if (sent.length === 1) void Promise.resolve().then(() => notices.tell(["b"]));
      },
    );
    notices.tell(["a"]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sent).toEqual([["a"], ["b"]]);
  });

  it("settles once the keys told before are sent, whatever lanes still running tell after", async () => {
    const { sent, landNext, queue } = heldQueue();
    const notices = new FreedSlotNotices(queue, () => {});
    notices.tell(["a"]);
    let settled = false;
    void notices.settled().then(() => (settled = true));
    notices.tell(["b"]);
    landNext();
    await ticks();
    // "a" landed; "b" is on its way, told after the call.
    expect(sent).toEqual([["a"], ["b"]]);
    expect(settled).toBe(true);
    landNext();
    await notices.settled();
  });
});
