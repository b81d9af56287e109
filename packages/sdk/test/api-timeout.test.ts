/** Calls to the executor are bounded in time: an executor that takes the request and never answers is an error, not a hang. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, expect, it } from "vitest";
import { postToExecutor } from "../src/api.ts";
import { StepwiseApiError } from "../src/errors.ts";

let server: Server | undefined;
afterEach(() => {
  server?.closeAllConnections();
  return new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});

it("gives up on an executor that never answers, with an error that says where it was going", async () => {
  server = createServer(() => {}); // takes every request, answers none
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/events`;
  const started = Date.now();
  const call = postToExecutor({ fetch, url, body: "[]", headers: {}, timeoutMs: 300 });
  await expect(call).rejects.toBeInstanceOf(StepwiseApiError);
  await expect(call).rejects.toThrow(/Could not reach the Stepwise executor at http:\/\/127\.0\.0\.1:\d+\/api\/events/);
  expect(Date.now() - started).toBeLessThan(5_000);
});
