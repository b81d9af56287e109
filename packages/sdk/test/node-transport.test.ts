/**
 * The keep-alive node:http POST that checkpoints use on Node: the answer comes back whole, and
 * every way the call can fail (refused, no answer in time, an answer cut off or far too long)
 * rejects, so the SDK falls back to answering the invocation.
 */
import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodePost } from "../src/node-transport.ts";
import { freePort } from "../../../test/support/net.ts";

let server: Server;
let base = "";
const seen: Array<{ body: string; signature: string | undefined }> = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      seen.push({ body, signature: req.headers["x-stepwise-signature"] as string | undefined });
      if (req.url === "/slow") return void setTimeout(() => res.end("late"), 1_000);
      if (req.url === "/cut") {
        res.writeHead(200, { "content-length": "100" });
        res.write("partial");
        return void res.destroy();
      }
      if (req.url === "/huge") return void res.end("x".repeat(200 * 1024));
      res.writeHead(409, { "content-type": "application/json" });
      res.end(JSON.stringify({ refused: "run-ended", echo: body.length }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe.runIf(nodePost)("checkpoint transport over node:http", () => {
  it("sends the body and headers and returns the status and text, over kept-alive connections", async () => {
    const body = JSON.stringify({ step: "é ✓ 注文" });
    for (let i = 0; i < 3; i++) {
      expect(await nodePost!(`${base}/api/checkpoints`, body, { "content-type": "application/json", "x-stepwise-signature": "t=1,s=ab" }, 5_000)).toEqual({
        status: 409,
        text: JSON.stringify({ refused: "run-ended", echo: body.length }),
      });
    }
    expect(seen.at(-1)).toEqual({ body, signature: "t=1,s=ab" });
  });

  it("rejects when the connection is refused, the answer is late, cut off or too long", async () => {
    const port = await freePort();
    await expect(nodePost!(`http://127.0.0.1:${port}/api/checkpoints`, "{}", {}, 5_000)).rejects.toThrow(/ECONNREFUSED/);
    await expect(nodePost!(`${base}/slow`, "{}", {}, 200)).rejects.toThrow(/no answer within 200 ms/);
    await expect(nodePost!(`${base}/cut`, "{}", {}, 5_000)).rejects.toThrow();
    await expect(nodePost!(`${base}/huge`, "{}", {}, 5_000)).rejects.toThrow(/passed 65536 bytes/);
  });
});
