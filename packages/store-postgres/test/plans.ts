/**
 * Reading the plans Postgres makes for the store's statements, on real PostgreSQL: the plan of
 * a statement, the plans of the statements inside a function (auto_explain), and the statement
 * a store method sends.
 */
import type { CheckpointWrite } from "@stepwise/engine";
import type { PostgresStore, SqlClient } from "@stepwise/store-postgres";
import type pg from "pg";
import { expect } from "vitest";
import { writeChanges } from "../src/change-sql.ts";
import { writeCheckpoints } from "../src/checkpoint-sql.ts";
import { emptyChange, seedRun, step } from "./store-contract.ts";

export interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  Plans?: PlanNode[];
}

export function indexesUsed(node: PlanNode): string[] {
  return [...(node["Index Name"] ? [node["Index Name"]] : []), ...(node.Plans ?? []).flatMap(indexesUsed)];
}

/** Tables the plan reads whole. */
export function relationsScanned(node: PlanNode): string[] {
  const own = node["Node Type"] === "Seq Scan" && node["Relation Name"] ? [node["Relation Name"]] : [];
  return [...own, ...(node.Plans ?? []).flatMap(relationsScanned)];
}

/** Every table the plan reads or writes. */
export function relationsTouched(node: PlanNode): string[] {
  return [...(node["Relation Name"] ? [node["Relation Name"]] : []), ...(node.Plans ?? []).flatMap(relationsTouched)];
}

/** A statement as a store method sends it: its text, parameters, and the name it is prepared under, if any. */
export interface Statement {
  text: string;
  params: readonly unknown[];
  prepare?: string;
}

/** An executor that keeps each statement instead of running it. */
export function capturing(statements: Statement[]): SqlClient {
  const client: SqlClient = {
    async query<Row>(text: string, params?: readonly unknown[], options?: { prepare?: string }) {
      statements.push({ text, params: params ?? [], ...(options?.prepare && { prepare: options.prepare }) });
      return [] as Row[];
    },
    transaction: (fn) => fn(client),
    exec: async () => {},
    close: async () => {},
  };
  return client;
}

/** Runs `statement` as its store method does (prepared under its name, if it has one). */
export async function run(client: pg.Client, { text, params, prepare }: Statement): Promise<pg.QueryResult> {
  const values = [...params];
  return prepare ? client.query({ name: prepare, text, values }) : client.query(text, values);
}

/**
 * Runs `statement` on `client`'s session (whose kept plans it uses) and rolls it back, returning
 * the plan of every statement run inside it (those of a function in the database) and its own.
 */
export async function plansRunOn(client: pg.Client, statement: Statement): Promise<PlanNode[]> {
  const plans: PlanNode[] = [];
  const collect = (notice: { message?: string }) => {
    const json = notice.message?.replace(/^duration: [\d.]+ ms\s+plan:\s*/, "");
    if (json?.startsWith("{")) plans.push((JSON.parse(json) as { Plan: PlanNode }).Plan);
  };
  client.on("notice", collect);
  try {
    await client.query("LOAD 'auto_explain'");
    await client.query(
      "SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on; SET auto_explain.log_format = 'json'; SET auto_explain.log_level = 'notice'",
    );
    await client.query("BEGIN");
    await run(client, statement);
    await client.query("ROLLBACK");
    await client.query("SET auto_explain.log_min_duration = -1");
  } finally {
    client.off("notice", collect);
  }
  return plans;
}

/** Checkpoints of eight runs just claimed in `store`, and the statement that writes them. */
export async function checkpointBatch(store: PostgresStore): Promise<{ writes: CheckpointWrite[]; statement: Statement }> {
  const seeded = await Promise.all(Array.from({ length: 8 }, () => seedRun(store, [{ kind: "invoke" }])));
  const claimed = new Map((await store.queue.claim("worker-a", 100, 30_000)).map((job) => [job.runId, job]));
  const writes: CheckpointWrite[] = seeded.map(({ run }) => {
    const job = claimed.get(run.id)!;
    return {
      runId: run.id, functionId: run.functionId, lease: { jobId: job.id, owner: "worker-a", claims: job.claims }, leaseMs: 30_000,
      step: { runId: run.id, id: "s0", name: "s0", kind: "run", position: 0, status: "completed", output: 1, attempts: 1, startedAt: new Date() },
      bytes: 1, maxRunStateBytes: 1_000_000,
    };
  });
  const statements: Statement[] = [];
  await writeCheckpoints(capturing(statements), writes);
  expect(statements).toHaveLength(1);
  return { writes, statement: statements[0]! };
}

/** Changes to eight runs just claimed in `store`, each ending a sleep as a wake-up does, and the statement that writes them together. */
export async function changeBatch(store: PostgresStore): Promise<Statement> {
  const seeded = await Promise.all(Array.from({ length: 8 }, () => seedRun(store, [{ kind: "invoke" }])));
  const claimed = new Map((await store.queue.claim("worker-a", 100, 30_000)).map((job) => [job.runId, job]));
  const statements: Statement[] = [];
  await writeChanges(
    capturing(statements),
    seeded.map(({ run }) => ({
      runId: run.id,
      version: run.version,
      fence: { jobId: claimed.get(run.id)!.id, owner: "worker-a" },
      change: emptyChange({
        run: { status: "running" },
        steps: [step(run.id, "nap", { kind: "sleep" })],
        dropJobs: [{ kind: "wake", stepId: "nap" }],
        jobs: [{ kind: "invoke", runId: run.id, lease: { owner: "worker-a", leaseMs: 30_000 } }],
        closeMatchers: ["ask"],
      }),
    })),
  );
  expect(statements).toHaveLength(1);
  return statements[0]!;
}
