/** Which deployment an app says it is when it registers: its version and its own URL. */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { serve } from "../src/adapters/fetch.ts";
import { configurationVersion, resolveDeployment } from "../src/deployment.ts";
import { Stepwise } from "../src/index.ts";

const URL_BASE = "https://shop.example.com/api/durable";
const FUNCTIONS = [{ id: "fulfil", triggers: [{ event: "order/created" }], retries: 3 }];
const VARIABLES = ["STEPWISE_APP_VERSION", "STEPWISE_DEPLOYMENT_URL", "VERCEL_DEPLOYMENT_ID", "VERCEL_URL", "STEPWISE_DEV", "STEPWISE_SERVE_URL"];

describe("resolveDeployment", () => {
  beforeEach(() => {
    for (const name of VARIABLES) vi.stubEnv(name, "");
  });
  afterEach(() => vi.unstubAllEnvs());

  it("takes serve()'s options first, then the environment", () => {
    vi.stubEnv("STEPWISE_APP_VERSION", "env-sha");
    vi.stubEnv("STEPWISE_DEPLOYMENT_URL", "https://env.example.com/api/durable");
    expect(resolveDeployment({}, FUNCTIONS, URL_BASE)).toEqual({ version: "env-sha", deploymentUrl: "https://env.example.com/api/durable" });
    expect(resolveDeployment({ appVersion: "opt-sha", deploymentUrl: "https://opt.example.com/api/durable" }, FUNCTIONS, URL_BASE)).toEqual({
      version: "opt-sha",
      deploymentUrl: "https://opt.example.com/api/durable",
    });
  });

  it("on Vercel: the deployment's ID; its URL only when configured (it may sit behind deployment protection)", () => {
    vi.stubEnv("VERCEL_DEPLOYMENT_ID", "dpl_abc");
    vi.stubEnv("VERCEL_URL", "shop-git-main-abc123.vercel.app");
    expect(resolveDeployment({}, FUNCTIONS, URL_BASE)).toEqual({ version: "dpl_abc" });
  });

  it("on Workers: the version metadata binding", () => {
    const env = { CF_VERSION_METADATA: { id: "9d1e-version", tag: "", timestamp: "" } };
    expect(resolveDeployment({}, FUNCTIONS, URL_BASE, env)).toEqual({ version: "9d1e-version" });
  });

  it("names no deployment URL that is the app's own URL", () => {
    expect(resolveDeployment({ appVersion: "v1", deploymentUrl: URL_BASE }, FUNCTIONS, URL_BASE)).toEqual({ version: "v1" });
  });

  it("without any, derives the version from the functions' configuration: the same for the same configuration", () => {
    const version = resolveDeployment({}, FUNCTIONS, URL_BASE).version;
    expect(version).toMatch(/^config-[0-9a-f]{16}$/);
    expect(configurationVersion(FUNCTIONS)).toBe(version);
    expect(configurationVersion([{ ...FUNCTIONS[0]!, retries: 2 }])).not.toBe(version);
  });
});

describe("registration", () => {
  afterEach(() => vi.unstubAllEnvs());

  it("sends the version and the deployment URL with the app's description", async () => {
    for (const name of VARIABLES) vi.stubEnv(name, "");
    const sent: unknown[] = [];
    const client = new Stepwise({
      id: "shop",
      signingKey: "key",
      fetch: async (_input, init) => (sent.push(JSON.parse(String(init?.body))), Response.json({ ok: true })),
    });
    const fn = client.createFunction({ id: "fulfil", triggers: [{ event: "order/created" }] }, async () => "done");
    const handler = serve({ client, functions: [fn], serveUrl: URL_BASE, appVersion: "3f9c2e1", deploymentUrl: "https://shop-3f9c2e1.example.com/api/durable" });
    expect((await handler(new Request(URL_BASE, { method: "PUT" }))).status).toBe(200);
    expect(sent).toEqual([expect.objectContaining({ appId: "shop", url: URL_BASE, version: "3f9c2e1", deploymentUrl: "https://shop-3f9c2e1.example.com/api/durable" })]);
  });
});
