/**
 * Statements that name their rows by ID in a JSON document (a batch of checkpoints, the lease
 * heartbeat, the leases a Redis claim takes) cost the same however many runs and jobs the store
 * holds: Postgres reaches those rows through the keys, never by reading a whole table. The
 * planner takes such a document for 100 rows whatever it holds, and with tens of thousands of
 * stored runs (a week of a small deployment's runs) or a few thousand jobs (sleeping runs) a
 * join with it scanned the whole table on every call. Checked on the plans themselves, on real
 * PostgreSQL with 20,000 runs, 4,000 jobs and analyzed tables, where those scans were chosen.
 */
import type { SqlClient } from "@stepwise/store-postgres";
import { beforeAll, describe, expect, it } from "vitest";
import { postgresAvailable } from "../../../test/support/postgres.ts";
import { suiteDatabase } from "../../../test/support/suite-database.ts";
import { writeCheckpoints } from "../src/checkpoint-sql.ts";
import { PgQueue } from "../src/queue.ts";
import { PgTx } from "../src/tx.ts";
import { SIGNAL_EVENT } from "@stepwise/protocol";
import pg from "pg";
import { capturing, checkpointBatch, indexesUsed, plansRunOn, relationsScanned, relationsTouched, type PlanNode, type Statement } from "./plans.ts";

describe.runIf(postgresAvailable)("statements naming rows by ID, on a store with many runs and jobs (real PostgreSQL)", () => {
  const suite = suiteDatabase("ckptplan");

  beforeAll(async () => {
    const { sql } = suite;
    await sql.query("INSERT INTO events (id, name, data, ts) VALUES ('evt-old', 'old', '{}', 0)");
    await sql.query(
      "INSERT INTO runs (id, function_id, event_id, status, ended_at) SELECT 'old-' || g, 'app-fn', 'evt-old', 'completed', now() FROM generate_series(1, 20000) g",
    );
    // A fifth of them asleep, each with its wake-up job.
    await sql.query("INSERT INTO jobs (kind, run_id, step_id, run_at) SELECT 'wake', 'old-' || g, 'nap', now() + interval '1 day' FROM generate_series(1, 20000, 5) g");
    await sql.query("ANALYZE runs");
    await sql.query("ANALYZE jobs");
  }, 60_000);

  /** An executor that plans each statement instead of running it; `plans` gets one per statement. */
  function explaining(plans: PlanNode[]): SqlClient {
    const client: SqlClient = {
      async query<Row>(text: string, params?: readonly unknown[]) {
        const [row] = await suite.sql.query<{ "QUERY PLAN": Array<{ Plan: PlanNode }> }>(`EXPLAIN (FORMAT JSON) ${text}`, params);
        plans.push(row!["QUERY PLAN"][0]!.Plan);
        return [] as Row[];
      },
      transaction: (fn) => fn(client),
      exec: async () => {},
      close: async () => {},
    };
    return client;
  }

  it("the lease heartbeat and the leases a Redis claim takes read no table whole", async () => {
    const ids = (await suite.sql.query<{ id: string }>("SELECT id::text FROM jobs ORDER BY id LIMIT 8")).map((row) => row.id);
    const plans: PlanNode[] = [];
    const queue = new PgQueue(explaining(plans));
    await queue.extendLeases(ids, "worker-a", 30_000);
    await queue.takeLeases(ids, "worker-a", 30_000);
    expect(plans.length).toBeGreaterThanOrEqual(2);
    expect(plans.flatMap(relationsScanned)).toEqual([]);
  });

  it("the claim of invocations with concurrency keys reads no table whole, however many wait", async () => {
    // 4,000 invocations waiting on 50 keys (two limits each), a tenth of them leased.
    await suite.sql.query(
      `INSERT INTO jobs (kind, run_id, run_at, concurrency, locked_by, locked_until)
       SELECT 'invoke', 'old-' || g, now() - interval '1 minute',
         jsonb_build_array(jsonb_build_object('key', 'fn:app-fn:k' || (g % 50), 'limit', 2), jsonb_build_object('key', 'app:app:pool', 'limit', 100)),
         CASE WHEN g % 10 = 0 THEN 'worker-a' END, CASE WHEN g % 10 = 0 THEN now() + interval '1 minute' END
       FROM generate_series(2, 20000, 5) g`,
    );
    await suite.sql.query("INSERT INTO concurrency_keys (key, next_at) SELECT 'fn:app-fn:k' || g, now() FROM generate_series(0, 49) g ON CONFLICT DO NOTHING");
    await suite.sql.query("ANALYZE jobs");
    // The claim is a function in the database: its statements' plans are read as they run
    // (auto_explain, nested statements included), in a transaction rolled back after.
    const claimPlans = await plansOf({ text: "SELECT id FROM stepwise_claim_keyed('worker-b', 16, 30000, 16, 2000, 20)", params: [] });
    // Locking the due keys, the candidates, the slots in use, the leases, the keys' next looks.
    expect(claimPlans.length).toBeGreaterThanOrEqual(5);
    const plans: PlanNode[] = [];
    await new PgQueue(explaining(plans)).slotsFreed(["fn:app-fn:k1"]);
    expect(plans).toHaveLength(1);
    expect([...claimPlans, ...plans].flatMap(relationsScanned).filter((relation) => relation === "jobs")).toEqual([]);
  });

  /** Runs `statement` on a session of its own (and rolls it back), returning its plan and those of every statement run inside it. */
  async function plansOf(statement: Statement): Promise<PlanNode[]> {
    const client = new pg.Client({ connectionString: suite.db.connectionString });
    await client.connect();
    try {
      return await plansRunOn(client, statement);
    } finally {
      await client.end();
    }
  }

  it("a batch of checkpoints reads no table whole", async () => {
    const { writes, statement } = await checkpointBatch(suite.store);
    // A function in the database: the plans of the statements inside it.
    const plans = await plansOf(statement);
    // The statement that writes the steps was among them.
    expect(plans.flatMap(relationsTouched)).toContain("steps");
    expect(plans.flatMap(relationsScanned)).toEqual([]);
    // And the statement does what it says on the same rows.
    expect((await writeCheckpoints(suite.sql, writes)).map((outcome) => typeof outcome === "object" && outcome.ok)).toEqual(writes.map(() => true));
  });

  it("a signal finds its one waiting run through the index, even on a prepared statement's generic plan", async () => {
    // 20,000 waits: half for signals (each its own name), half for a user's event.
    await suite.sql.query(
      `INSERT INTO matchers (run_id, step_id, kind, event_name, match_path, match_value)
       SELECT 'old-' || g, 'wait', 'wait', CASE WHEN g % 2 = 0 THEN '${SIGNAL_EVENT}' ELSE 'order/paid' END, 'data.signal', '"approval/' || g || '"'
       FROM generate_series(1, 20000) g`,
    );
    await suite.sql.query("ANALYZE matchers");
    const statements: Statement[] = [];
    await new PgTx(capturing(statements)).findMatchers(SIGNAL_EVENT, "approval/42");
    const statement = statements[0];
    // The executor's statements are prepared: after a few runs Postgres may plan them once for
    // any parameters, and such a plan cannot tell that $1 is the signal name.
    const client = new pg.Client({ connectionString: suite.db.connectionString });
    await client.connect();
    try {
      await client.query("SET plan_cache_mode = force_generic_plan");
      await client.query(`PREPARE find_signal AS ${statement!.text}`);
      const values = statement!.params.map((value) => client.escapeLiteral(String(value))).join(", ");
      const [row] = (await client.query(`EXPLAIN (FORMAT JSON) EXECUTE find_signal(${values})`)).rows as Array<{ "QUERY PLAN": Array<{ Plan: PlanNode }> }>;
      const plan = row!["QUERY PLAN"][0]!.Plan;
      expect(indexesUsed(plan)).toEqual(["matchers_reserved_value_idx"]);
      expect(relationsScanned(plan)).toEqual([]);
      // And the statement finds that one wait.
      expect((await client.query(`EXECUTE find_signal(${values})`)).rows.map((r: { run_id: string }) => r.run_id)).toEqual(["old-42"]);
    } finally {
      await client.end();
    }
  });
});
