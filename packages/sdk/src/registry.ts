/**
 * The functions one `serve()` exposes: each user function plus the companion of each
 * `onFailure`, checked once at startup (one app, unique IDs) so mistakes fail fast.
 */
import { APP_FEATURES, type AppDescription } from "@stepwise/protocol";
import type { AnyStepwiseFunction, RunnableFunction } from "./function.ts";
import { resolveDeployment, type DeploymentOptions } from "./deployment.ts";
import type { EnvSource } from "./env.ts";
import { failureCompanion } from "./on-failure.ts";

/** The SDK's name and version, sent in descriptions and on every answer. */
export const SDK_VERSION = "stepwise-js/0.1.0";
/** What this SDK understands beyond protocol version 1: the executor sends it only those. */
const SDK_FEATURES = [APP_FEATURES.outputsBySize, APP_FEATURES.compactSteps];

export class FunctionRegistry {
  private readonly byId = new Map<string, RunnableFunction>();

  constructor(
    readonly appId: string,
    functions: readonly AnyStepwiseFunction[],
  ) {
    for (const fn of functions) {
      if (fn.appId !== appId) {
        throw new TypeError(`serve(): function "${fn.id}" belongs to app "${fn.appId}", not "${appId}"; serve it with its own client`);
      }
      this.add(fn);
      const companion = failureCompanion(fn);
      if (companion) this.add(companion);
    }
  }

  /** The function with this app-local ID. */
  get(id: string): RunnableFunction | undefined {
    return this.byId.get(id);
  }

  /** App-local IDs, for error messages. */
  ids(): string[] {
    return [...this.byId.keys()];
  }

  /** What `GET` answers and `PUT` registers. */
  describe(url: string, deployment: DeploymentOptions = {}, env?: EnvSource): AppDescription {
    const functions = [...this.byId.values()].map((fn) => fn.config);
    return { appId: this.appId, url, sdk: SDK_VERSION, features: SDK_FEATURES, ...resolveDeployment(deployment, functions, url, env), functions };
  }

  private add(fn: RunnableFunction): void {
    if (this.byId.has(fn.config.id)) {
      throw new TypeError(`serve(): two functions have the ID "${fn.config.id}" in app "${this.appId}"`);
    }
    this.byId.set(fn.config.id, fn);
  }
}
