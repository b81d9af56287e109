/** Executor settings from the environment, so `stepwise dev` and `start` share one reading. */
export interface EnvSettings {
  signingKey?: string;
  signingKeyNext?: string;
  eventKey?: string;
  appUrls: string[];
  dataDir?: string;
  databaseUrl?: string;
  /** First retry delay for functions that set no backoff (tests use a few ms). */
  retryInitialMs?: number;
  retryMaxMs?: number;
}

export function readEnv(env: Record<string, string | undefined> = process.env): EnvSettings {
  const number = (name: string) => {
    const value = env[name];
    if (value === undefined || value === "") return undefined;
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`${name} must be a positive number of milliseconds, got "${value}"`);
    return parsed;
  };
  return {
    signingKey: env.STEPWISE_SIGNING_KEY || undefined,
    signingKeyNext: env.STEPWISE_SIGNING_KEY_NEXT || undefined,
    eventKey: env.STEPWISE_EVENT_KEY || undefined,
    appUrls: (env.STEPWISE_APP_URLS ?? "").split(",").map((url) => url.trim()).filter(Boolean),
    dataDir: env.STEPWISE_DATA_DIR || undefined,
    databaseUrl: env.DATABASE_URL || undefined,
    retryInitialMs: number("STEPWISE_RETRY_INITIAL_MS"),
    retryMaxMs: number("STEPWISE_RETRY_MAX_MS"),
  };
}
