/**
 * Settings resolved per call from the client's options and the environment.
 *
 * Never read in a constructor: on Workers the environment arrives with each request, and a
 * module-level client is created before any request exists. Options win over environment.
 */
import { DEV_SIGNING_KEY } from "@stepwise/protocol";

/**
 * Environment variables as a runtime hands them over: `process.env`, or a Worker's `env`
 * bindings (an interface, with non-string bindings too; only string values are read).
 */
export type EnvSource = object;

/** The options of a client that can also come from the environment. */
export interface ConnectionOptions {
  eventKey?: string;
  baseUrl?: string;
  signingKey?: string;
  signingKeyNext?: string;
  dev?: boolean;
}

/** Everything the SDK needs to talk to the executor, for one call. */
export interface Settings {
  /** The event key, `"dev"` in dev mode when none is set; undefined when missing. */
  eventKey: string | undefined;
  /** Executor base URL without a trailing slash. */
  baseUrl: string;
  /** Keys that sign and verify requests: current first, then next. Empty when none is set. */
  signingKeys: string[];
  dev: boolean;
  /** Public URL of the app's `/api/durable`, when configured. */
  serveUrl: string | undefined;
}

export const DEFAULT_BASE_URL = "http://127.0.0.1:8288";

/** Reads one variable: `override` (a Worker's env) first, then `process.env` where it exists. */
export function readEnv(name: string, override?: EnvSource): string | undefined {
  const fromOverride = (override as Record<string, unknown> | undefined)?.[name];
  if (typeof fromOverride === "string" && fromOverride !== "") return fromOverride;
  const processEnv = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const value = processEnv?.[name];
  return value === "" ? undefined : value;
}

/** Resolves the settings for one call. */
export function resolveSettings(options: ConnectionOptions, env?: EnvSource): Settings {
  const dev = options.dev ?? readEnv("STEPWISE_DEV", env) === "1";
  const signingKeys = [
    options.signingKey ?? readEnv("STEPWISE_SIGNING_KEY", env),
    options.signingKeyNext ?? readEnv("STEPWISE_SIGNING_KEY_NEXT", env),
  ].filter((key): key is string => typeof key === "string" && key !== "");
  const baseUrl = options.baseUrl ?? readEnv("STEPWISE_BASE_URL", env) ?? DEFAULT_BASE_URL;
  return {
    eventKey: options.eventKey ?? readEnv("STEPWISE_EVENT_KEY", env) ?? (dev ? "dev" : undefined),
    baseUrl: baseUrl.replace(/\/+$/, ""),
    signingKeys,
    dev,
    serveUrl: readEnv("STEPWISE_SERVE_URL", env),
  };
}

/**
 * The key that signs requests to the executor: the configured one, or in dev mode the public
 * dev key. Undefined means the app is misconfigured (not dev, no key).
 */
export function outgoingSigningKey(settings: Settings): string | undefined {
  return settings.signingKeys[0] ?? (settings.dev ? DEV_SIGNING_KEY : undefined);
}

/** The message shown when a production app has no signing key. */
export const MISSING_SIGNING_KEY =
  "No signing key: set STEPWISE_SIGNING_KEY (or pass signingKey to new Stepwise()), or set STEPWISE_DEV=1 for local development";
