/**
 * App registration: an app's description (from `PUT /api/durable` through `POST /api/apps`, or
 * from discovery) checked and written with its functions, its version and its cron triggers'
 * first ticks, in one transaction of the store.
 */
import { AppDescriptionSchema, findTextProblem, globalFunctionId, type AppDescription } from "@stepwise/protocol";
import { appUrlProblem, type AppUrlPolicy } from "./app-urls.ts";
import { afterCommit, type EngineContext } from "./context.ts";
import { InputError } from "./errors.ts";
import { CRON_JOB_PREFIX, type FunctionRecord } from "./records.ts";
import { firstTicks } from "./runtime/cron.ts";

/** What a registration did: the app, the version it registered, its functions' global IDs. */
export interface SyncedApp {
  appId: string;
  version?: string;
  functions: string[];
}

/**
 * Registers (or updates) an app and its functions. With `urlPolicy` (a registration the app
 * sent, naming its own URL) the URL must be one the executor may call; a URL the operator gave
 * (discovery) is taken as it is. An `InputError` says what is wrong, and nothing is written.
 * `revive: false`: the registration brings no gone deployment back (see `Store.syncApp`).
 */
export async function syncApp(ctx: EngineContext, body: unknown, options: { urlPolicy?: AppUrlPolicy; revive?: boolean } = {}): Promise<SyncedApp> {
  const parsed = AppDescriptionSchema.safeParse(body);
  if (!parsed.success) {
    throw new InputError(`Invalid app description: ${describedIssue(body, parsed.error.issues[0])}`);
  }
  const app: AppDescription = parsed.data;
  const functions: FunctionRecord[] = app.functions.map((config) => ({
    id: globalFunctionId(app.appId, config.id),
    appId: app.appId,
    localId: config.id,
    config,
  }));
  // The app's own statement of its deployment URL is checked even when the operator gave its
  // URL (discovery): at least never a metadata or link-local address, never another scheme.
  const deploymentPolicy = options.urlPolicy ?? { allowPrivate: true };
  const problem =
    findTextProblem(app.functions, "functions") ??
    (options.urlPolicy ? appUrlProblem(app.url, options.urlPolicy) : null) ??
    (app.deploymentUrl !== undefined ? (appUrlProblem(app.deploymentUrl, deploymentPolicy)?.replace("the app URL", "the deployment URL") ?? null) : null);
  if (problem) throw new InputError(`Invalid app description: ${problem}`);
  const now = new Date(ctx.clock.now());
  const record = {
    id: app.appId,
    url: app.url,
    sdk: app.sdk,
    features: app.features ?? [],
    syncedAt: now,
    ...(app.version !== undefined && { version: app.version }),
    ...(app.deploymentUrl !== undefined && { deploymentUrl: app.deploymentUrl }),
  };
  const { taken, queued, deleted } = await ctx.store.syncApp(record, functions, firstTicks(functions, now), { revive: options.revive ?? true });
  if (taken.length > 0) {
    const which = taken.map((t) => `"${t.functionId}" (app "${t.appId}")`).join(", ");
    throw new InputError(`App "${app.appId}" not registered: its function IDs would be ${which}, which another app already holds; rename the function or the app`, 409);
  }
  // Refreshed before the lanes hear of the new ticks: a tick checks its pattern in the registry.
  await ctx.registry.refresh();
  const lines = queued.map((job) => ({ level: "info" as const, line: `cron "${job.stepId}" of ${job.runId.slice(CRON_JOB_PREFIX.length)}: first tick at ${job.runAt.toISOString()}` }));
  await afterCommit(ctx, { lines, queued, deleted });
  return { appId: app.appId, ...(app.version !== undefined && { version: app.version }), functions: functions.map((fn) => fn.id) };
}

/**
 * Where an app description is wrong, in its author's terms: a function's problem names the
 * function by its ID (`function "sync" (functions.2): debounce.period: …`), the rest by path.
 */
function describedIssue(body: unknown, issue: { path: PropertyKey[]; message: string } | undefined): string {
  if (!issue) return "it does not match the protocol";
  const [top, index, ...rest] = issue.path;
  if (top !== "functions" || typeof index !== "number") return `at ${issue.path.map(String).join(".") || "(root)"}: ${issue.message}`;
  const id = (body as { functions?: Array<{ id?: unknown } | null> }).functions?.[index]?.id;
  const named = typeof id === "string" ? `function ${JSON.stringify(id)} (functions.${index})` : `functions.${index}`;
  return `${named}: ${rest.length > 0 ? `${rest.map(String).join(".")}: ` : ""}${issue.message}`;
}
