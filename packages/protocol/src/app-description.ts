/**
 * What an app says about itself: its description (`GET /api/durable`, and its registration with
 * the executor on `APPS_ROUTE`), the features its SDK reads beyond protocol version 1, and the
 * names the executor derives from it.
 */
import { z } from "zod";
import { storableText } from "./text.ts";
import { FunctionConfigSchema } from "./function-config.ts";

/** The body of `GET /api/durable` and of the app's registration with the executor. */
export const AppDescriptionSchema = z.object({
  appId: storableText("appId").min(1),
  /** Where the executor reaches the app's `/api/durable`. */
  url: z.string().url(),
  sdk: storableText("sdk"),
  /** What the SDK understands beyond protocol version 1 ({@link APP_FEATURES}); absent from older SDKs. */
  features: z.array(storableText("feature")).max(32).optional(),
  /**
   * The version of the code this deployment serves (a git SHA, a platform's deployment ID, or
   * derived from the functions' configuration). Each run records the version it started on.
   */
  version: z
    .string()
    .regex(/^[\x21-\x7e]{1,200}$/, "version must be 1 to 200 printable ASCII characters without spaces (a git SHA, a deployment ID)")
    .optional(),
  /**
   * This deployment's own URL, which keeps serving this version after later deploys (a Vercel
   * deployment URL, a Workers version's preview URL): runs that started on this version are
   * invoked there while it answers, and on `url` once it is gone. Absent: `url` serves them all.
   */
  deploymentUrl: storableText("deploymentUrl").max(2_048).url().optional(),
  functions: z.array(FunctionConfigSchema),
});

/**
 * Features an SDK declares when it registers, so an executor sends an app only what it reads:
 * an older SDK would take a step sent by size alone for a step that returned nothing.
 */
export const APP_FEATURES = {
  /** Completed steps may come with `outputBytes` alone, read back through {@link STEP_OUTPUTS_ROUTE}. */
  outputsBySize: "outputs-by-size",
  /** Stored steps may come without the fields that hold their usual value (see `WireStepSchema`). */
  compactSteps: "compact-steps",
} as const;
export type AppDescription = z.infer<typeof AppDescriptionSchema>;

/** The event a function's `onFailure` companion is triggered by. */
export const FUNCTION_FAILED_EVENT = "stepwise/function.failed";
/** The event a child run started by `step.invoke` is triggered by. */
export const FUNCTION_INVOKED_EVENT = "stepwise/function.invoked";

/** The executor's global ID of an app's function. */
export function globalFunctionId(appId: string, functionId: string): string {
  return `${appId}-${functionId}`;
}

/** The executor's route apps register on (`PUT /api/durable` posts the app's description there, signed). */
export const APPS_ROUTE = "/api/apps";
