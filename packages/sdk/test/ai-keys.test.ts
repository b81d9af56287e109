/**
 * Where `step.ai.infer` finds a provider's key: the app's environment, which on a Worker is the
 * bindings serve() is given (no `process.env` there without nodejs_compat), over `process.env`.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { createStepTools, type StepCall } from "../src/step-tools.ts";

/** The op the step would be planned as, with its sealed-to-be request. */
async function planned(env?: object) {
  let call: StepCall | undefined;
  const step = createStepTools((c) => ((call = c), new Promise(() => {})), undefined, env);
  void step.ai.infer("plan", { provider: "openai", model: "gpt-4o-mini", body: { messages: [] } });
  await Promise.resolve();
  return call!.plan() as { request: { url: string; headers: Record<string, string> } };
}

describe("step.ai.infer's keys", () => {
  afterEach(() => vi.unstubAllEnvs());

  it("reads a Worker's bindings over process.env", async () => {
    vi.stubEnv("OPENAI_API_KEY", "from-process");
    expect((await planned({ OPENAI_API_KEY: "from-binding", OPENAI_BASE_URL: "https://llm.internal.example/v1/" })).request).toMatchObject({
      url: "https://llm.internal.example/v1/chat/completions",
      headers: { authorization: "Bearer from-binding" },
    });
    expect((await planned()).request.headers.authorization).toBe("Bearer from-process");
  });

  it("says which variable to set when neither has the key", async () => {
    vi.stubEnv("OPENAI_API_KEY", "");
    await expect(planned({ SOMETHING_ELSE: "x", A_NUMBER: 5 })).rejects.toThrow(/set OPENAI_API_KEY in the app's environment/);
  });
});
