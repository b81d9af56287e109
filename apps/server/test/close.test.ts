/**
 * `close(graceMs)` ends within about its grace period, even while a client keeps using a
 * kept-alive connection that was busy when it began (an app's checkpoints, a dashboard, a poller):
 * Node never closes such a connection as idle, so close() used to wait for it for ever.
 */
import { Agent, request } from "node:http";
import { silentLogger } from "@stepwise/engine";
import { PostgresStore } from "@stepwise/store-postgres";
import { expect, it } from "vitest";
import { freshPglite } from "../../../test/support/pglite.ts";
import { startServer } from "../src/server.ts";

it("ends within the grace period while a connection busy at close() keeps being used", async () => {
  const server = await startServer({ store: new PostgresStore(await freshPglite()), dev: true, port: 0, log: silentLogger });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const send = (method: string, path: string, write: (req: ReturnType<typeof request>) => void) =>
    new Promise<number>((resolve, reject) => {
      const req = request(`${server.url}${path}`, { agent, method, headers: { "content-type": "application/json" } }, (res) => (res.resume(), res.on("end", () => resolve(res.statusCode!))));
      req.on("error", reject);
      write(req);
    });
  await send("GET", "/api/runs", (req) => req.end());
  // A request whose body is still on its way when close() begins: its connection is busy.
  const slow = send("POST", "/api/events", (req) => (req.write('{"name":"close/probe",'), setTimeout(() => req.end('"data":{}}'), 200)));
  await new Promise((resolve) => setTimeout(resolve, 50));
  const started = Date.now();
  let closed = false;
  const closing = server.close(1_000).then(() => (closed = true));
  // The request under way is answered; then the client polls on the same connection.
  expect(await slow).toBe(200);
  while (!closed && Date.now() - started < 10_000) {
    await send("GET", "/api/runs", (req) => req.end()).catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  await closing;
  expect(Date.now() - started).toBeLessThan(3_000);
  agent.destroy();
});
