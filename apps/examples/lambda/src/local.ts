/**
 * Runs the Lambda handler locally, the way a Function URL would call it: each HTTP request on
 * 127.0.0.1:3001 becomes an API Gateway v2 event, and the handler's result becomes the answer.
 * So `stepwise dev --app http://127.0.0.1:3001/api/durable` drives the real handler.
 *
 *   STEPWISE_DEV=1 npx tsx apps/examples/lambda/src/local.ts
 */
import { createServer, type IncomingMessage } from "node:http";
import type { ApiGatewayV2Event } from "@stepwise/sdk/lambda";
import { handler } from "./handler.ts";

const port = Number(process.env.PORT ?? 3001);

/** The v2 event a Function URL would send; the body travels base64-encoded, as for binary types. */
async function toEvent(req: IncomingMessage): Promise<ApiGatewayV2Event> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  const url = new URL(req.url ?? "/", `http://${req.headers.host ?? `127.0.0.1:${port}`}`);
  const headers: Record<string, string> = { "x-forwarded-proto": "http" };
  for (const [name, value] of Object.entries(req.headers)) if (typeof value === "string") headers[name] = value;
  return {
    version: "2.0",
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers,
    requestContext: { domainName: url.host, http: { method: req.method ?? "GET" } },
    ...(body.length > 0 ? { body: body.toString("base64"), isBase64Encoded: true } : { isBase64Encoded: false }),
  };
}

createServer((req, res) => {
  void (async () => {
    const result = await handler(await toEvent(req), {});
    res.writeHead(result.statusCode, result.headers).end(result.body);
  })().catch((error: unknown) => {
    console.error(error);
    res.writeHead(500).end();
  });
}).listen(port, "127.0.0.1", () => {
  console.log(`Lambda handler listening on http://127.0.0.1:${port}/api/durable (as API Gateway v2 events)`);
});
