/**
 * A run's live messages in the record: numbered 1, 2, 3, … without gaps however publishes of a
 * run overlap, the oldest past the cap deleted, and the hourly prune never taking a live run's
 * last message (its number is where the next one counts from: a reader resuming after n must
 * never be handed a new n).
 */
import { PostgresStore, type PgliteClient } from "@stepwise/store-postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshPglite } from "../../../test/support/pglite.ts";

describe("run messages on PGlite", () => {
  let client: PgliteClient;
  let store: PostgresStore;
  beforeAll(async () => {
    client = await freshPglite();
    store = new PostgresStore(client);
    for (const id of ["r1", "r2", "r3"]) await client.query("INSERT INTO runs (id, function_id, event_id, status) VALUES ($1, 'app-f', 'e', 'running')", [id]);
  });
  afterAll(() => store.close());

  const messages = (n: number, tag: string) => Array.from({ length: n }, (_, i) => ({ topic: "t", data: JSON.stringify(`${tag}${i}`) }));

  it("numbers the messages of overlapping publishes densely, in commit order", async () => {
    const lasts = await Promise.all(Array.from({ length: 8 }, (_, i) => store.appendRunMessages("r1", messages(3, `p${i}-`))));
    expect(lasts.sort((a, b) => a - b)).toEqual([3, 6, 9, 12, 15, 18, 21, 24]);
    const read = await store.readRunMessages("r1", 0, 100);
    expect(read.map((m) => m.seq)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    // Each publish's messages stay together and in order.
    for (let at = 0; at < 24; at += 3) expect(read.slice(at, at + 3).map((m) => (JSON.parse(m.data) as string).slice(-1))).toEqual(["0", "1", "2"]);
    expect((await store.readRunMessages("r1", 20, 2)).map((m) => m.seq)).toEqual([21, 22]);
  });

  it("keeps a run's latest 1,000", async () => {
    await store.appendRunMessages("r2", messages(200, "a"));
    expect(await store.appendRunMessages("r2", messages(1_000, "b"))).toBe(1_200);
    const read = await store.readRunMessages("r2", 0, 2_000);
    expect(read).toHaveLength(1_000);
    expect(read[0]!.seq).toBe(201);
  });

  it("prunes old messages but a live run's last, so its numbering goes on", async () => {
    await store.appendRunMessages("r3", messages(5, "old"));
    await client.query("UPDATE run_messages SET published_at = now() - interval '2 hours' WHERE run_id = 'r3'");
    await store.prune(7 * 24 * 3_600_000, 1_000);
    expect((await store.readRunMessages("r3", 0, 100)).map((m) => m.seq)).toEqual([5]);
    expect(await store.appendRunMessages("r3", messages(1, "new"))).toBe(6);
    expect((await store.readRunMessages("r3", 5, 100)).map((m) => m.data)).toEqual(['"new0"']);
  });
});
