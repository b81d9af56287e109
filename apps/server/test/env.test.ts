import { expect, it } from "vitest";
import { readEnv } from "../src/env.ts";

it("reads keys, app URLs and backoff from the environment", () => {
  const env = readEnv({
    STEPWISE_SIGNING_KEY: "k1",
    STEPWISE_SIGNING_KEY_NEXT: "k2",
    STEPWISE_EVENT_KEY: "ek",
    STEPWISE_APP_URLS: " http://a/api/durable, ,http://b/api/durable ",
    STEPWISE_RETRY_INITIAL_MS: "20",
    STEPWISE_DEPLOYMENT_GONE_AFTER_MS: "90000",
  });
  expect(env).toMatchObject({ signingKey: "k1", signingKeyNext: "k2", eventKey: "ek", retryInitialMs: 20, deploymentGoneAfterMs: 90_000 });
  expect(env.appUrls).toEqual(["http://a/api/durable", "http://b/api/durable"]);
});

it("treats empty variables as unset and rejects a bad number with its name", () => {
  expect(readEnv({ STEPWISE_SIGNING_KEY: "" }).signingKey).toBeUndefined();
  expect(() => readEnv({ STEPWISE_RETRY_MAX_MS: "soon" })).toThrow(/STEPWISE_RETRY_MAX_MS must be a positive number/);
  // A window of 0 is meant (the first refused connection moves runs); below it is not.
  expect(readEnv({ STEPWISE_DEPLOYMENT_GONE_AFTER_MS: "0" }).deploymentGoneAfterMs).toBe(0);
  expect(() => readEnv({ STEPWISE_DEPLOYMENT_GONE_AFTER_MS: "-1" })).toThrow(/STEPWISE_DEPLOYMENT_GONE_AFTER_MS must be a positive number/);
  // A window shorter than 4 s would let two refusals around a stall count as a deployment gone.
  expect(() => readEnv({ STEPWISE_DEPLOYMENT_GONE_AFTER_MS: "1000" })).toThrow(/STEPWISE_DEPLOYMENT_GONE_AFTER_MS must be 0 .* or at least 4000 ms/);
  expect(readEnv({ STEPWISE_DEPLOYMENT_GONE_AFTER_MS: "4000" }).deploymentGoneAfterMs).toBe(4_000);
});

it("chooses the Postgres driver of stepwise start, and names the choices when one is wrong", () => {
  expect(readEnv({}).postgresDriver).toBe("neon");
  expect(readEnv({ STEPWISE_PG_DRIVER: "pg" }).postgresDriver).toBe("pg");
  expect(() => readEnv({ STEPWISE_PG_DRIVER: "mysql" })).toThrow(/neon, neon-http or pg/);
});
