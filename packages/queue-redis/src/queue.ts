/**
 * The ready queue in Redis, through @upstash/redis (REST, so it works from Workers and Lambda
 * too): the index of which jobs are due (a sorted set by due time), which are handed out and
 * until when (a sorted set by expiry) and each job's fields (a hash), so executors learn what
 * is due without polling Postgres. Every change that touches more than one key is one Lua
 * script, so executors never see half of it.
 *
 * Postgres stays the record of every job and of every lease (see store-postgres's
 * `IndexedQueue`): a job handed out here runs only once its lease in the record is taken, and
 * whatever Redis loses, `reconcile` re-adds from the record.
 *
 * Keys (prefix `stepwise:` by default): `<prefix>due`, `<prefix>leased`, `<prefix>job:<id>`,
 * `<prefix>reconcile-lock`. Scripts build job keys from the prefix, so this expects a single
 * Redis (as Upstash is), not a cluster.
 */
import type { JobRecord, ReadyQueue } from "@stepwise/engine";
import { Redis } from "@upstash/redis";
import { CLAIM } from "./scripts/claim.lua.ts";
import { FORGET } from "./scripts/complete.lua.ts";
import { ENQUEUE } from "./scripts/enqueue.lua.ts";
import { EXTEND } from "./scripts/extend.lua.ts";
import { UNLOCK } from "./scripts/lock.lua.ts";
import { NEXT_DUE } from "./scripts/next-due.lua.ts";
import { RECONCILE } from "./scripts/reconcile.lua.ts";
import { RELEASE_ALL } from "./scripts/release-all.lua.ts";
import { RELEASE } from "./scripts/release.lua.ts";

export interface RedisQueueOptions {
  /** Upstash REST URL (`UPSTASH_REDIS_REST_URL`), or the project's bridge to a local Redis. */
  url: string;
  /** Upstash REST token (`UPSTASH_REDIS_REST_TOKEN`). */
  token: string;
  /** Key prefix, so several deployments (or test suites) can share one Redis. */
  prefix?: string;
}

type Script = ReturnType<Redis["createScript"]>;

export class RedisQueue implements ReadyQueue {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly keys: [due: string, leased: string];
  private readonly scripts: Record<"claim" | "enqueue" | "extend" | "forget" | "release" | "releaseAll" | "reconcile" | "nextDue" | "unlock", Script>;

  constructor(options: RedisQueueOptions) {
    // Raw strings back: automatic JSON parsing would turn a step ID like "1e3" into 1000.
    this.redis = new Redis({ url: options.url, token: options.token, automaticDeserialization: false });
    this.prefix = options.prefix ?? "stepwise:";
    this.keys = [`${this.prefix}due`, `${this.prefix}leased`];
    // createScript runs EVALSHA and falls back to EVAL when Redis does not know the script yet.
    const script = (source: string) => this.redis.createScript(source);
    this.scripts = {
      claim: script(CLAIM),
      enqueue: script(ENQUEUE),
      extend: script(EXTEND),
      forget: script(FORGET),
      release: script(RELEASE),
      releaseAll: script(RELEASE_ALL),
      reconcile: script(RECONCILE),
      nextDue: script(NEXT_DUE),
      unlock: script(UNLOCK),
    };
  }

  async publish(jobs: JobRecord[]): Promise<void> {
    if (jobs.length === 0) return;
    await this.scripts.enqueue.exec(this.keys, [this.prefix, "", "0", ...jobs.flatMap(jobFields)]);
  }

  async claim(owner: string, limit: number, leaseMs: number): Promise<string[]> {
    const flat = (await this.scripts.claim.exec(this.keys, [this.prefix, owner, String(limit), String(leaseMs)])) as string[];
    const ids: string[] = [];
    for (let i = 0; i + 5 < flat.length; i += 6) ids.push(String(flat[i]));
    return ids;
  }

  async extendLeases(jobIds: string[], owner: string, leaseMs: number): Promise<void> {
    if (jobIds.length === 0) return;
    await this.scripts.extend.exec([this.keys[1]], [this.prefix, owner, String(leaseMs), ...jobIds]);
  }

  async release(jobId: string, owner: string, delayMs: number): Promise<void> {
    await this.scripts.release.exec(this.keys, [this.prefix, owner, jobId, String(Math.max(0, Math.round(delayMs)))]);
  }

  async forget(jobIds: string[]): Promise<void> {
    if (jobIds.length === 0) return;
    await this.scripts.forget.exec(this.keys, [this.prefix, ...jobIds]);
  }

  async nextDueIn(): Promise<number | null> {
    const [next, redisNow] = ((await this.scripts.nextDue.exec(this.keys, [])) as string[]).map(Number) as [number, number];
    // Scores are Redis time: the distance is measured on Redis's clock, whatever this process's says.
    return next < 0 ? null : Math.max(0, next - redisNow);
  }

  async releaseAllLeases(): Promise<void> {
    await this.scripts.releaseAll.exec(this.keys, [this.prefix]);
  }

  /**
   * Re-adds every job `list` pages through (the record's free jobs past their grace period)
   * that Redis does not know, once per interval across all executors (a short-lived lock).
   */
  async reconcile(list: (afterId: string | null, limit: number) => Promise<JobRecord[]>): Promise<number> {
    const lockKey = `${this.prefix}reconcile-lock`;
    const token = crypto.randomUUID();
    const locked = await this.redis.set(lockKey, token, { nx: true, px: 60_000 });
    if (locked !== "OK") return 0;
    try {
      let added = 0;
      let after: string | null = null;
      for (;;) {
        const page: JobRecord[] = await list(after, 500);
        if (page.length === 0) return added;
        added += Number(await this.scripts.reconcile.exec(this.keys, [this.prefix, ...page.flatMap(jobFields)]));
        after = page[page.length - 1]!.id;
      }
    } finally {
      await this.scripts.unlock.exec([lockKey], [token]);
    }
  }
}

function jobFields(job: JobRecord): string[] {
  return [job.id, job.kind, job.runId, job.stepId ?? "", String(job.runAt.getTime())];
}
