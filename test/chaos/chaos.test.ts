/**
 * Chaos: 200 runs of 5 steps across 3 `stepwise start` processes (Postgres + Redis, through
 * the Neon and Upstash client code paths), with executors SIGKILLed at random moments and
 * restarted. Every run completes; every step's output is committed exactly once in Postgres
 * (an audit trigger records each commit); a step body runs more than once only when an
 * executor died while it ran, and the test reports how often that happened.
 */
import { Stepwise } from "@stepwise/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { Cluster } from "../support/cluster.ts";
import { postgresAvailable } from "../support/postgres.ts";
import { redisAvailable } from "../support/redis.ts";

const RUNS = 200;
const STEPS = 5;
const bodies = new Map<string, number>();

const client = new Stepwise({ id: "chaos", signingKey: "cluster-signing-key", schemas: { "chaos/go": z.object({ n: z.number() }) } });
const fiveSteps = client.createFunction({ id: "five-steps", triggers: [{ event: "chaos/go" }], retries: 5 }, async ({ event, step, runId }) => {
  let total = 0;
  for (let i = 0; i < STEPS; i++) {
    total += await step.run(`step-${i}`, async () => {
      const key = `${runId}:step-${i}`;
      bodies.set(key, (bodies.get(key) ?? 0) + 1);
      await new Promise((resolve) => setTimeout(resolve, 40 + Math.random() * 80));
      return event.data.n * 10 + i;
    });
  }
  return total;
});

// Records every transition of a step into `completed`, and any write over a completed step.
const AUDIT = `
CREATE TABLE step_commits (run_id text, step_id text, at timestamptz DEFAULT clock_timestamp());
CREATE TABLE step_rewrites (run_id text, step_id text);
CREATE FUNCTION audit_step() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.status = 'completed' THEN
    INSERT INTO step_rewrites VALUES (NEW.run_id, NEW.id);
  ELSIF NEW.status = 'completed' THEN
    INSERT INTO step_commits (run_id, step_id) VALUES (NEW.run_id, NEW.id);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_step AFTER INSERT OR UPDATE ON steps FOR EACH ROW EXECUTE FUNCTION audit_step();`;

describe.runIf(postgresAvailable && redisAvailable)("chaos: executors killed at random", () => {
  const cluster = new Cluster({
    client,
    functions: [fiveSteps],
    executors: 3,
    redisDb: 0,
    env: { STEPWISE_CONCURRENCY: "4", STEPWISE_LEASE_MS: "2000", STEPWISE_MAINTENANCE_MS: "2000" },
  });

  beforeAll(async () => {
    await cluster.start();
    await cluster.db!.client().exec(AUDIT);
  }, 120_000);
  afterAll(async () => cluster.stop(), 60_000);

  it(`${RUNS} runs of ${STEPS} steps complete, each output committed once`, { timeout: 240_000 }, async () => {
    const sql = cluster.db!.client();
    const ids = await cluster.send(Array.from({ length: RUNS }, (_, n) => ({ name: "chaos/go", data: { n } })));
    expect(ids).toHaveLength(RUNS);

    let kills = 0;
    const deadline = Date.now() + 180_000;
    let done = 0;
    while (Date.now() < deadline) {
      const [row] = await sql.query<{ done: number }>("SELECT count(*)::int AS done FROM runs WHERE status = 'completed'");
      done = row!.done;
      if (done === RUNS) break;
      await new Promise((resolve) => setTimeout(resolve, 600 + Math.random() * 900));
      const victim = Math.floor(Math.random() * 3);
      await cluster.kill(victim);
      kills++;
      await cluster.startExecutor(victim);
    }
    expect(done, cluster.logs().slice(-5_000)).toBe(RUNS);

    const statuses = await sql.query<{ status: string; n: number }>("SELECT status, count(*)::int AS n FROM runs GROUP BY status");
    expect(statuses).toEqual([{ status: "completed", n: RUNS }]);
    const outputs = await sql.query<{ output: number; n: number }>(
      "SELECT r.output::jsonb AS output, (e.data::jsonb->>'n')::int AS n FROM runs r JOIN events e ON e.id = r.event_id",
    );
    for (const { output, n } of outputs) expect(output).toBe(n * 10 * STEPS + (STEPS * (STEPS - 1)) / 2);

    const [commits] = await sql.query<{ total: number; distinct: number; max: number }>(
      `SELECT count(*)::int AS total, count(DISTINCT (run_id, step_id))::int AS distinct,
              coalesce(max(c), 0)::int AS max FROM (SELECT run_id, step_id, count(*) AS c FROM step_commits GROUP BY 1, 2) t
       CROSS JOIN LATERAL (SELECT 1) x`,
    );
    expect(commits).toEqual({ total: RUNS * STEPS, distinct: RUNS * STEPS, max: 1 });
    expect(await sql.query("SELECT * FROM step_rewrites")).toEqual([]);

    const repeated = [...bodies.values()].filter((count) => count > 1).length;
    const extraRuns = [...bodies.values()].reduce((sum, count) => sum + count - 1, 0);
    console.log(`chaos: ${kills} SIGKILLs; ${repeated} of ${RUNS * STEPS} step bodies ran more than once (${extraRuns} extra executions)`);
    // A body repeats only when its executor died while it ran: at most 4 in flight per kill.
    expect(extraRuns).toBeLessThanOrEqual(kills * 4);
    expect(kills).toBeGreaterThanOrEqual(3);
  });
});
