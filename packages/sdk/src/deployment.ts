/**
 * Which deployment of the app this is: its version, and its own URL where its platform gives
 * one. The executor records the version each run starts on and keeps invoking the run at that
 * deployment's URL while it answers, so a deploy never changes the code under a run in flight
 * (runs move to the current deployment only once theirs is gone).
 *
 * Resolved per call, like every setting: `serve()` options first, then the environment
 * (`STEPWISE_APP_VERSION`, `STEPWISE_DEPLOYMENT_URL`), then for the version what the platform
 * says of itself (Vercel's deployment ID; a Worker's version metadata binding), else a hash of
 * the functions' configuration. A deployment URL is never guessed: a platform's per-deployment
 * URL may sit behind its deployment protection (Vercel's answers 401 by default on some plans),
 * and a run pinned there could not be invoked. Without one, the app's URL serves every run.
 */
import type { FunctionConfig } from "@stepwise/protocol";
import { readEnv, type EnvSource } from "./env.ts";

/** Options of `serve()` that say which deployment this is. */
export interface DeploymentOptions {
  /**
   * The version of the code this deployment serves: a git SHA, a build or deployment ID. Else
   * `STEPWISE_APP_VERSION`, Vercel's `VERCEL_DEPLOYMENT_ID`, a Worker's `CF_VERSION_METADATA`
   * binding, or a hash of the functions' configuration.
   */
  appVersion?: string;
  /**
   * This deployment's own URL of `/api/durable`, which keeps serving this version after later
   * deploys (a Vercel deployment URL, a Workers version preview URL), reachable by the executor.
   * Else `STEPWISE_DEPLOYMENT_URL`. Runs that start on this version are invoked there.
   */
  deploymentUrl?: string;
}

/** The deployment, as registered: `deploymentUrl` only where one is known. */
export interface Deployment {
  version: string;
  deploymentUrl?: string;
}

export function resolveDeployment(options: DeploymentOptions, functions: readonly FunctionConfig[], serveUrl: string, env?: EnvSource): Deployment {
  const version = options.appVersion ?? readEnv("STEPWISE_APP_VERSION", env) ?? readEnv("VERCEL_DEPLOYMENT_ID", env) ?? workerVersion(env) ?? configurationVersion(functions);
  const deploymentUrl = options.deploymentUrl ?? readEnv("STEPWISE_DEPLOYMENT_URL", env);
  return deploymentUrl && deploymentUrl !== serveUrl ? { version, deploymentUrl } : { version };
}

/** A Worker's version metadata binding (`[version_metadata] binding = "CF_VERSION_METADATA"`). */
function workerVersion(env?: EnvSource): string | undefined {
  const metadata = (env as { CF_VERSION_METADATA?: { id?: unknown } } | undefined)?.CF_VERSION_METADATA;
  return typeof metadata?.id === "string" && metadata.id !== "" ? metadata.id : undefined;
}

/**
 * A version for an app that names none: the functions' configuration, hashed (FNV-1a, 64 bits).
 * Two deploys of different code with the same configuration get the same version; set
 * `STEPWISE_APP_VERSION` to tell them apart.
 */
export function configurationVersion(functions: readonly FunctionConfig[]): string {
  const text = JSON.stringify(functions);
  let hash = 0xcbf29ce484222325n;
  for (let i = 0; i < text.length; i++) {
    hash ^= BigInt(text.charCodeAt(i));
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return `config-${hash.toString(16).padStart(16, "0")}`;
}
