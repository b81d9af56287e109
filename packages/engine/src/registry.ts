/**
 * Apps and their functions, cached in memory and reloaded from the store, so every executor
 * process sees a sync done through any of them (within `refreshMs`, or at once on a miss).
 */
import type { AppRecord, FunctionRecord } from "./records.ts";
import type { Store } from "./store.ts";

export class Registry {
  private functions = new Map<string, FunctionRecord>();
  private apps = new Map<string, AppRecord>();
  private loadedAt = 0;

  constructor(
    private readonly store: Store,
    private readonly refreshMs = 5_000,
  ) {}

  async refresh(): Promise<void> {
    const [apps, functions] = await Promise.all([this.store.listApps(), this.store.listFunctions()]);
    this.apps = new Map(apps.map((app) => [app.id, app]));
    this.functions = new Map(functions.map((fn) => [fn.id, fn]));
    this.loadedAt = Date.now();
  }

  private async fresh(): Promise<void> {
    if (Date.now() - this.loadedAt > this.refreshMs) await this.refresh();
  }

  /** The function with this global ID; reloads once before saying it does not exist. */
  async getFunction(id: string): Promise<FunctionRecord | undefined> {
    await this.fresh();
    if (!this.functions.has(id)) await this.refresh();
    return this.functions.get(id);
  }

  async getApp(id: string): Promise<AppRecord | undefined> {
    await this.fresh();
    if (!this.apps.has(id)) await this.refresh();
    return this.apps.get(id);
  }

  /** Functions with a trigger on `eventName`. */
  async triggeredBy(eventName: string): Promise<FunctionRecord[]> {
    await this.fresh();
    return [...this.functions.values()].filter((fn) => fn.config.triggers.some((t) => t.event === eventName));
  }

  async listFunctions(): Promise<FunctionRecord[]> {
    await this.fresh();
    return [...this.functions.values()];
  }
}
