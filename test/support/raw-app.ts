/**
 * An app that speaks the wire without the SDK: each invocation's answer comes from a script,
 * so a test can send the executor what no SDK would (reserved event names, a step name with a
 * NUL, a value nested thousands of levels deep, ops for steps already stored) and check that
 * the executor refuses it clearly and boundedly. Registered on the executor directly.
 */
import { serve as serveNode, type ServerType } from "@hono/node-server";
import type { Executor } from "@stepwise/engine";
import type { FunctionConfig, InvokeRequest } from "@stepwise/protocol";

export interface RawApp {
  url: string;
  /** Every invocation received, in order. */
  requests: InvokeRequest[];
  close(): Promise<void>;
}

/** An answer: a status and a body, sent as the raw text given (or as JSON). */
export type RawAnswer = { status: number; body: unknown; raw?: string };

export async function startRawApp(
  executor: Executor,
  appId: string,
  functions: FunctionConfig[],
  answer: (request: InvokeRequest, nth: number) => RawAnswer,
): Promise<RawApp> {
  const requests: InvokeRequest[] = [];
  const server: ServerType = await new Promise((resolve) => {
    const started = serveNode(
      {
        port: 0,
        hostname: "127.0.0.1",
        fetch: async (request) => {
          const body = (await request.json()) as InvokeRequest;
          requests.push(body);
          const reply = answer(body, requests.filter((r) => r.run.id === body.run.id).length);
          return new Response(reply.raw ?? JSON.stringify(reply.body), { status: reply.status, headers: { "content-type": "application/json" } });
        },
      },
      () => resolve(started),
    );
  });
  const address = server.address();
  const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}/api/durable`;
  await executor.syncApp({ appId, url, sdk: "raw-test", functions });
  return { url, requests, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
