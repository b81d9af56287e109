/**
 * The Node executor answers `POST /api/checkpoints` on node:http itself (the rest goes to the
 * Hono API): what the framework did for that route must still hold there. Bodies over the limit
 * are refused, declared or streamed; bytes that are not UTF-8 are refused; a body left unread
 * never reaches the next request on a kept-alive connection; a store that fails (here the real
 * store with its checkpoint write made to throw) answers 500.
 */
import { request, Agent } from "node:http";
import { DEFAULT_MAX_BODY_BYTES } from "@stepwise/api";
import { silentLogger, type Logger } from "@stepwise/engine";
import { CHECKPOINT_ROUTE, DEV_SIGNING_KEY, HEADERS, PROTOCOL_VERSION, sign } from "@stepwise/protocol";
import { PostgresStore } from "@stepwise/store-postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshPglite } from "../../../test/support/pglite.ts";
import { startServer, type RunningServer } from "../src/server.ts";

const checkpoint = JSON.stringify({
  version: PROTOCOL_VERSION,
  run: { id: "no-such-run", appId: "probe", functionId: "fn" },
  token: "1.1.x",
  step: { id: "a", name: "a", position: 0, output: 1, durationMs: 0 },
});

/** The status of an answer cut off by the server's reset of a connection it refused. */
const RESET = -1;

interface Answer {
  status: number;
  body: { error?: string; refused?: string };
  socket: unknown;
}

/** One POST through `agent` (kept alive); `body` written as given, or `chunks` streamed without a length. */
function post(server: RunningServer, agent: Agent, options: { headers?: Record<string, string>; body?: Buffer | string; chunks?: Iterable<Buffer> }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}${CHECKPOINT_ROUTE}`, { method: "POST", agent, headers: { "content-type": "application/json", ...options.headers } }, (res) => {
      let text = "";
      res.on("data", (chunk) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) as Answer["body"], socket: req.socket }));
    });
    // The server may answer and close before a large body is all written. Its reset can reach
    // the client before the answer is read (the kernel then drops it): refused all the same.
    req.on("error", (error) => {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EPIPE" && code !== "ECONNRESET") return reject(error);
      setTimeout(() => resolve({ status: RESET, body: {}, socket: req.socket }), 1_000);
    });
    if (options.chunks) {
      for (const chunk of options.chunks) req.write(chunk);
      req.end();
    } else req.end(options.body);
  });
}

/** The real store, whose checkpoint writes can be made to fail as a dropped connection does. */
class FlakyStore extends PostgresStore {
  failCheckpoints = false;
  override async checkpoint(write: Parameters<PostgresStore["checkpoint"]>[0]) {
    if (this.failCheckpoints) throw new Error("Connection terminated unexpectedly");
    return super.checkpoint(write);
  }
}

const signed = async (body: string) => ({ [HEADERS.signature]: await sign(DEV_SIGNING_KEY, { method: "POST", target: CHECKPOINT_ROUTE, body }) });

describe("the Node executor's checkpoint route", () => {
  let server: RunningServer;
  const errors: string[] = [];
  const log: Logger = { ...silentLogger, error: (line: string) => void errors.push(line) };
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });

  let store: FlakyStore;

  beforeAll(async () => {
    store = new FlakyStore(await freshPglite());
    server = await startServer({ store, dev: true, port: 0, log });
  });
  afterAll(async () => {
    agent.destroy();
    await server?.close();
  });

  it("refuses a checkpoint for a run it does not hold, over one kept-alive connection", async () => {
    const first = await post(server, agent, { body: checkpoint, headers: await signed(checkpoint) });
    const second = await post(server, agent, { body: checkpoint, headers: await signed(checkpoint) });
    expect([first.status, second.status]).toEqual([409, 409]);
    expect(first.body.refused).toBeDefined();
    expect(second.socket).toBe(first.socket);
  });

  it("refuses a body declared larger than the limit without reading it", async () => {
    const answer = await post(server, agent, { headers: { ...(await signed(checkpoint)), "content-length": String(DEFAULT_MAX_BODY_BYTES + 1) }, body: checkpoint.padEnd(DEFAULT_MAX_BODY_BYTES + 1) });
    expect(answer).toMatchObject({ status: 413, body: { error: `Request body too large: the limit is ${DEFAULT_MAX_BODY_BYTES} bytes` } });
  });

  it("refuses a body streamed past the limit", async () => {
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    const chunks = Array.from({ length: DEFAULT_MAX_BODY_BYTES / chunk.length + 1 }, () => chunk);
    const answer = await post(server, agent, { headers: await signed(checkpoint), chunks });
    // Refused without reading it all: the 413, or, when the reset overtook it, the reset.
    expect([413, RESET]).toContain(answer.status);
  });

  it("refuses bytes that are not UTF-8, and a body a refusal left unread never reaches the next request", async () => {
    const notUtf8 = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
    const bad = await post(server, agent, { headers: await signed("{}"), body: notUtf8 });
    expect(bad).toMatchObject({ status: 400, body: { error: "Body is not valid UTF-8; send JSON encoded as UTF-8" } });
    // Refused on its header before its body was read; the next request on the agent still gets its own answer.
    const unsigned = await post(server, agent, { body: checkpoint });
    expect(unsigned.status).toBe(401);
    expect(unsigned.body.error).toMatch(/^Checkpoint rejected: /);
    const after = await post(server, agent, { body: checkpoint, headers: await signed(checkpoint) });
    expect(after.status).toBe(409);
  });

  it("still serves every other route through the API", async () => {
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    const missing = await fetch(`${server.url}/api/nothing`, { method: "POST" });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toMatch(/POST \/api\/checkpoints/);
  });

  it("answers 500 with a line in the log when the store fails", async () => {
    // A function registered, so the checkpoint reaches the store, which then fails.
    const body = JSON.stringify({ appId: "probe", url: "http://127.0.0.1:9/api/durable", sdk: "x", functions: [{ id: "fn", triggers: [{ event: "x/y" }], retries: 0 }] });
    expect((await fetch(`${server.url}/api/apps`, { method: "POST", body, headers: { [HEADERS.signature]: await sign(DEV_SIGNING_KEY, { method: "POST", target: "/api/apps", body }) } })).status).toBe(200);
    store.failCheckpoints = true;
    const answer = await post(server, agent, { body: checkpoint, headers: await signed(checkpoint) });
    expect(answer).toMatchObject({ status: 500, body: { error: "Internal error in the executor; see its log" } });
    expect(errors.some((line) => line.startsWith(`POST ${CHECKPOINT_ROUTE} failed`))).toBe(true);
  });
});
