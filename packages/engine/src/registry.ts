/**
 * Apps and their functions, cached in memory and reloaded from the store, so every executor
 * process sees a sync done through any of them (within `refreshMs` and one reload, or at once on
 * a miss).
 *
 * Lookups inside a transaction are synchronous and read the cache only: reloading there would
 * need a second connection (PGlite has one, so it would deadlock). Callers refresh before they
 * open a transaction (`ensureFresh`, `getFunction`).
 */
import type { AppRecord, FunctionRecord } from "./records.ts";
import type { Store } from "./store.ts";

export class Registry {
  private functions = new Map<string, FunctionRecord>();
  private apps = new Map<string, AppRecord>();
  private loadedAt = 0;
  /** The reload under way: callers that find the cache stale meanwhile share it, not start their own. */
  private reloading: Promise<void> | undefined;

  constructor(
    private readonly store: Store,
    private readonly refreshMs = 5_000,
  ) {}

  /** Reloads from the store now (after a sync, or a miss). */
  async refresh(): Promise<void> {
    const [apps, functions] = await Promise.all([this.store.listApps(), this.store.listFunctions()]);
    this.apps = new Map(apps.map((app) => [app.id, app]));
    this.functions = new Map(functions.map((fn) => [fn.id, fn]));
    this.loadedAt = Date.now();
  }

  /**
   * Reloads when the cache is older than `refreshMs`. Never call inside a transaction. Every
   * lane asks at once when a burst crosses the deadline: one reload serves them all. A cache
   * less than twice its age serves on while that reload runs, so no lane waits for it: before,
   * every invocation and timer in flight paused for the reload's round trips once every
   * `refreshMs` (2-11 ms each on a busy machine: twenty sleeps waking together all waited).
   * Older than that (nothing asked for a while), the caller waits for the reload.
   */
  async ensureFresh(): Promise<void> {
    const age = Date.now() - this.loadedAt;
    if (age < this.refreshMs) return;
    this.reloading ??= this.refresh().finally(() => (this.reloading = undefined));
    if (age < 2 * this.refreshMs) return void this.reloading.catch(() => {});
    await this.reloading;
  }

  /** The function with this global ID; reloads once before saying it does not exist. */
  async getFunction(id: string): Promise<FunctionRecord | undefined> {
    await this.ensureFresh();
    if (!this.functions.has(id)) await this.refresh();
    return this.functions.get(id);
  }

  async getApp(id: string): Promise<AppRecord | undefined> {
    await this.ensureFresh();
    if (!this.apps.has(id)) await this.refresh();
    return this.apps.get(id);
  }

  /** From the cache, for use inside transactions. */
  cachedFunction(id: string): FunctionRecord | undefined {
    return this.functions.get(id);
  }

  /**
   * From the cache, for use inside transactions. A run started here takes its app's version
   * from it: one synced through another executor within `refreshMs` is not seen yet, and the
   * run starts on the version before, whose deployment still serves it.
   */
  cachedApp(id: string): AppRecord | undefined {
    return this.apps.get(id);
  }

  /** Functions with a trigger on `eventName`, from the cache (for use inside transactions). */
  triggeredBy(eventName: string): FunctionRecord[] {
    return [...this.functions.values()].filter((fn) => fn.config.triggers.some((t) => t.event === eventName));
  }

  async listFunctions(): Promise<FunctionRecord[]> {
    await this.ensureFresh();
    return [...this.functions.values()];
  }

  async listApps(): Promise<AppRecord[]> {
    await this.ensureFresh();
    return [...this.apps.values()];
  }
}
