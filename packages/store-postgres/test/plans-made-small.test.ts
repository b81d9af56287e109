/**
 * The executor's statements are prepared, and once one has run a few times Postgres may keep a
 * single plan for it, whatever its parameters, made from the statistics of that moment. A new
 * store's tables are small and never analyzed; the jobs table is analyzed while empty whenever
 * autovacuum passes between bursts. A plan made then must still be sound once the tables have
 * grown: each test here makes the plan on small tables (forced, so it is made now), grows the
 * tables, and runs the statement again on the same session.
 */
import { PgQueue, type SqlClient } from "@stepwise/store-postgres";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "../../../test/support/postgres.ts";
import { changeBatch, checkpointBatch, plansRunOn, relationsScanned, relationsTouched, run, type PlanNode, type Statement } from "./plans.ts";

/** One session of its own on `db`, keeping one plan per prepared statement from its first run. */
async function genericPlanSession(db: TestDatabase): Promise<{ client: pg.Client; sql: SqlClient }> {
  const client = new pg.Client({ connectionString: db.connectionString });
  await client.connect();
  await client.query("SET plan_cache_mode = force_generic_plan");
  const sql: SqlClient = {
    async query<Row>(text: string, params?: readonly unknown[], options?: { prepare?: string }) {
      const values = params ? [...params] : [];
      const result = options?.prepare ? await client.query({ name: options.prepare, text, values }) : await client.query(text, values);
      return result.rows as Row[];
    },
    transaction: async (fn) => fn(sql),
    exec: async (script) => void (await client.query(script)),
    close: async () => client.end(),
  };
  return { client, sql };
}

/** A migrated store in a database of its own, dropped after `fn`. */
async function inNewStore(label: string, fn: (db: TestDatabase) => Promise<void>): Promise<void> {
  const db = await createTestDatabase(label);
  try {
    await db.store().migrate();
    await fn(db);
  } finally {
    await db.drop();
  }
}

describe.runIf(postgresAvailable)("statements planned while the store was small, run once it has grown (real PostgreSQL)", () => {
  it("a claim leases no more jobs than it asks for, on a plan made while the queue was empty", async () => {
    await inNewStore("claimempty", async (db) => {
      const { client, sql } = await genericPlanSession(db);
      try {
        // As autovacuum may between two bursts: the statistics say the queue is empty.
        await client.query("ANALYZE jobs");
        const queue = new PgQueue(sql);
        expect(await queue.claim("worker-a", 10, 30_000)).toEqual([]);
        await client.query("INSERT INTO jobs (kind, run_id, run_at) SELECT 'invoke', 'run-' || g, now() - make_interval(secs => 1000 - g) FROM generate_series(1, 1000) g");
        const claimed = await queue.claim("worker-a", 10, 30_000);
        expect(claimed.map((job) => job.runId)).toEqual(Array.from({ length: 10 }, (_, i) => `run-${i + 1}`));
        const [leased] = (await client.query("SELECT count(*)::int AS n FROM jobs WHERE locked_by IS NOT NULL")).rows as Array<{ n: number }>;
        expect(leased!.n).toBe(10);
      } finally {
        await client.end();
      }
    });
  });

  /**
   * The plans `statement`'s run makes when it is prepared on a new store (the plan made then is
   * the one kept), then runs on once the store holds a week of a small deployment: 20,000 runs,
   * a fifth of them asleep, each of those waiting for an event.
   */
  async function plansOnceGrown(db: TestDatabase, statement: Statement): Promise<PlanNode[]> {
    const { client } = await genericPlanSession(db);
    try {
      await client.query("BEGIN");
      await run(client, statement);
      await client.query("ROLLBACK");
      await client.query("INSERT INTO events (id, name, data, ts) VALUES ('evt-old', 'old', '{}', 0)");
      await client.query("INSERT INTO runs (id, function_id, event_id, status) SELECT 'old-' || g, 'app-fn', 'evt-old', 'running' FROM generate_series(1, 20000) g");
      await client.query("INSERT INTO jobs (kind, run_id, step_id, run_at) SELECT 'wake', 'old-' || g, 'nap', now() + interval '1 day' FROM generate_series(1, 20000, 5) g");
      await client.query("INSERT INTO matchers (run_id, step_id, kind, event_name) SELECT 'old-' || g, 'ask', 'wait', 'user/approved' FROM generate_series(1, 20000, 5) g");
      return await plansRunOn(client, statement);
    } finally {
      await client.end();
    }
  }

  it("a batch of checkpoints reads no table whole on a plan made while the store was new", async () => {
    await inNewStore("ckptnew", async (db) => {
      const { statement } = await checkpointBatch(db.store());
      const plans = await plansOnceGrown(db, statement);
      // The statement that writes the steps was among them.
      expect(plans.flatMap(relationsTouched)).toContain("steps");
      expect(plans.flatMap(relationsScanned)).toEqual([]);
    });
  });

  it("a batch of changes (wake-ups coming due together) reads no table whole on a plan made while the store was new", async () => {
    await inNewStore("changesnew", async (db) => {
      const plans = await plansOnceGrown(db, await changeBatch(db.store()));
      // Every table a change writes was in it.
      expect(plans.flatMap(relationsTouched)).toEqual(expect.arrayContaining(["runs", "jobs", "steps", "matchers"]));
      expect(plans.flatMap(relationsScanned)).toEqual([]);
    });
  });
});

/**
 * A session left to itself plans a statement afresh for its first five runs' arguments before it
 * keeps one plan, and planning the batch functions' statement costs more than running it. They
 * keep the generic plan from their first run (schema.sql says why); a session that asks for
 * custom plans shows it, as a custom plan would carry the arguments written into it.
 */
describe.runIf(postgresAvailable)("the batch functions keep one plan from their first run on a connection (real PostgreSQL)", () => {
  const batches: Array<[string, (db: TestDatabase) => Promise<Statement>]> = [
    ["stepwise_checkpoints", async (db) => (await checkpointBatch(db.store())).statement],
    ["stepwise_apply_changes", (db) => changeBatch(db.store())],
  ];
  for (const [name, batch] of batches) {
    it(`${name} runs its statement on the generic plan, even where the session asks for custom plans`, async () => {
      await inNewStore(`kept${name.slice(9, 13)}`, async (db) => {
        const statement = await batch(db);
        const client = new pg.Client({ connectionString: db.connectionString });
        await client.connect();
        try {
          await client.query("SET plan_cache_mode = force_custom_plan");
          await client.query("SET auto_explain.log_verbose = on");
          const nested = (await plansRunOn(client, statement)).find((plan) => relationsTouched(plan).includes("steps"));
          // A custom plan reads the batch from the JSON written into it, not from the argument.
          expect(functionCalls(nested!)).toContain("jsonb_to_recordset($1)");
        } finally {
          await client.end();
        }
      });
    });
  }
});

/** The calls of the plan's function scans, as verbose plans print them. */
function functionCalls(node: PlanNode & { "Function Call"?: string }): string[] {
  return [...(node["Function Call"] ? [node["Function Call"]] : []), ...(node.Plans ?? []).flatMap(functionCalls)];
}
