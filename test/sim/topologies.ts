/**
 * Where the simulation runs: the same store code paths as production. PGlite (embedded);
 * PostgreSQL through the `pg` driver (plain TCP); PostgreSQL through the Neon driver and the
 * ws bridge, with the queue in Redis through @upstash/redis and the REST bridge. Each gets a
 * fresh database with audit triggers that record every commit of a step and every write the
 * promises forbid, so the checker sees what the store itself saw.
 */
import type { Store } from "@stepwise/engine";
import { RedisQueue } from "@stepwise/queue-redis";
import { createPgClient, PostgresStore, type SqlClient } from "@stepwise/store-postgres";
import { Redis } from "@upstash/redis";
import { freshPglite } from "../support/pglite.ts";
import { createTestDatabase } from "../support/postgres.ts";
import { startTestRedis } from "../support/redis.ts";

export type TopologyName = "pglite" | "postgres" | "postgres+redis";
export const TOPOLOGIES: TopologyName[] = ["pglite", "postgres", "postgres+redis"];

export interface Topology {
  name: TopologyName;
  store: Store;
  sql: SqlClient;
  /** Drops everything the queue outside the record holds (a Redis flush); false without one. */
  flushQueue(): Promise<boolean>;
  close(): Promise<void>;
}

const AUDIT = `
CREATE TABLE IF NOT EXISTS sim_step_commits (run_id text, step_id text, at timestamptz DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS sim_violations (kind text, run_id text, step_id text, detail text, at timestamptz DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS sim_run_ends (run_id text PRIMARY KEY, txid bigint);
CREATE INDEX IF NOT EXISTS sim_step_commits_run ON sim_step_commits (run_id);
CREATE INDEX IF NOT EXISTS sim_violations_run ON sim_violations (run_id);
CREATE OR REPLACE FUNCTION sim_audit_step() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.status IN ('completed', 'failed')
     AND (NEW.status <> OLD.status OR NEW.output IS DISTINCT FROM OLD.output) THEN
    INSERT INTO sim_violations (kind, run_id, step_id, detail) VALUES ('step rewritten', NEW.run_id, NEW.id, OLD.status || ' -> ' || NEW.status);
  END IF;
  IF NEW.status = 'completed' AND (TG_OP = 'INSERT' OR OLD.status <> 'completed') THEN
    INSERT INTO sim_step_commits (run_id, step_id) VALUES (NEW.run_id, NEW.id);
  END IF;
  -- A run may end in the same change that writes its last steps; only a run that ended in an
  -- earlier transaction must not be written to.
  IF NEW.status <> 'cancelled' AND EXISTS (SELECT 1 FROM sim_run_ends WHERE run_id = NEW.run_id AND txid <> txid_current()) THEN
    INSERT INTO sim_violations (kind, run_id, step_id, detail) VALUES ('step written after its run ended', NEW.run_id, NEW.id, coalesce(OLD.status || ' -> ', '') || NEW.status);
  END IF;
  RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS sim_audit_step ON steps;
CREATE TRIGGER sim_audit_step AFTER INSERT OR UPDATE ON steps FOR EACH ROW EXECUTE FUNCTION sim_audit_step();
CREATE OR REPLACE FUNCTION sim_audit_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status IN ('completed', 'failed', 'cancelled', 'skipped') AND OLD.status NOT IN ('completed', 'failed', 'cancelled', 'skipped') THEN
    INSERT INTO sim_run_ends (run_id, txid) VALUES (NEW.id, txid_current()) ON CONFLICT (run_id) DO NOTHING;
  END IF;
  IF OLD.status IN ('completed', 'failed', 'cancelled', 'skipped') AND NEW.status <> OLD.status THEN
    INSERT INTO sim_violations (kind, run_id, detail) VALUES ('run changed after it ended', NEW.id, OLD.status || ' -> ' || NEW.status);
  END IF;
  RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS sim_audit_run ON runs;
CREATE TRIGGER sim_audit_run AFTER UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION sim_audit_run();`;

export async function openTopology(name: TopologyName): Promise<Topology> {
  if (name === "pglite") {
    const sql = await freshPglite();
    const store = new PostgresStore(sql);
    return ready({ name, store, sql, flushQueue: async () => false, close: () => sql.close() });
  }
  const db = await createTestDatabase(`sim_${name.replace("+", "_")}`);
  if (name === "postgres") {
    const sql = createPgClient({ connectionString: db.connectionString, max: 10, onError: () => {} });
    const store = new PostgresStore(sql);
    return ready({ name, store, sql, flushQueue: async () => false, close: async () => (await sql.close(), await db.drop()) });
  }
  const redis = await startTestRedis("sim");
  const sql = db.client();
  const store = new PostgresStore(sql, { readyQueue: new RedisQueue({ url: redis.url, token: redis.token, prefix: redis.prefix }), reconcileGraceMs: 1_000 });
  const client = new Redis({ url: redis.url, token: redis.token });
  return ready({
    name,
    store,
    sql,
    async flushQueue() {
      const keys = await client.keys(`${redis.prefix}*`);
      if (keys.length > 0) await client.del(...keys);
      return true;
    },
    async close() {
      await db.drop();
      await redis.close();
    },
  });
}

async function ready(topology: Topology): Promise<Topology> {
  await topology.store.migrate();
  await topology.sql.exec(AUDIT);
  return topology;
}
