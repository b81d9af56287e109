/**
 * One executor process: the engine working the queue, the HTTP API on Node, and app
 * discovery. `stepwise dev` and `stepwise start` differ only in the store and the keys.
 */
import { serve as serveNode, type ServerType } from "@hono/node-server";
import { Executor, type ExecutorOptions, type Store } from "@stepwise/engine";
import { DEV_SIGNING_KEY } from "@stepwise/protocol";
import { createApi } from "@stepwise/api";
import { startDiscovery } from "./discovery.ts";

export interface ServerOptions extends Omit<ExecutorOptions, "signingKey" | "store"> {
  store: Store;
  dev: boolean;
  port: number;
  host?: string;
  /** Apps to discover by URL. */
  appUrls?: string[];
  signingKey?: string;
  signingKeyNext?: string;
  eventKey?: string;
  /** Bearer key of the run and function routes outside dev mode. */
  apiKey?: string;
  /** Embedded mode owns its store alone: leases left by a killed process are released at start. */
  exclusiveStore?: boolean;
  /** Apps may register loopback and private URLs outside dev mode. */
  allowPrivateAppUrls?: boolean;
}

export interface RunningServer {
  url: string;
  port: number;
  executor: Executor;
  /** Resolves once every `appUrls` app has been synced once. */
  appsSynced: Promise<void>;
  /** Stops serving, lets running jobs finish for up to `graceMs` (default 10 s), closes the store. */
  close(graceMs?: number): Promise<void>;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const signingKey = options.signingKey ?? (options.dev ? DEV_SIGNING_KEY : undefined);
  if (!signingKey) throw new Error("STEPWISE_SIGNING_KEY is required outside dev mode: apps verify every request with it");
  const executor = new Executor({ ...options, signingKey });
  await options.store.migrate();
  if (options.exclusiveStore) await options.store.queue.releaseAllLeases();
  await executor.start();

  const api = createApi({
    executor,
    dev: options.dev,
    signingKeys: [signingKey, options.signingKeyNext].filter((key): key is string => !!key),
    appSigningKeys: options.appSigningKeys,
    eventKey: options.eventKey,
    apiKey: options.apiKey,
    allowPrivateAppUrls: options.allowPrivateAppUrls,
  });
  const { server, port } = await listen(api.fetch, options.port, options.host ?? "127.0.0.1");
  const url = `http://${options.host ?? "127.0.0.1"}:${port}`;
  const discovery = startDiscovery({ executor, urls: options.appUrls ?? [], signingKey, appSigningKeys: options.appSigningKeys });

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    executor,
    appsSynced: discovery.synced,
    close: (graceMs) =>
      (closing ??= (async () => {
        discovery.stop();
        // Stop accepting; idle keep-alive connections are closed so they cannot hold the server open.
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        (server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
        await executor.stop(graceMs);
        await closed;
        await options.store.close();
      })()),
  };
}

function listen(fetch: (request: Request) => Response | Promise<Response>, port: number, hostname: string) {
  return new Promise<{ server: ServerType; port: number }>((resolve, reject) => {
    const server = serveNode({ fetch, port, hostname }, (info) => resolve({ server, port: info.port }));
    // A client gets 10 s to send its headers and 30 s for the whole request (a batch of events
    // is at most 16 MB), so slow senders cannot hold connections open.
    Object.assign(server, { headersTimeout: 10_000, requestTimeout: 30_000 });
    server.once("error", reject);
  });
}
