/**
 * One executor process: the engine working the queue, the HTTP API on Node, and app
 * discovery. `stepwise dev` and `stepwise start` differ only in the store and the keys.
 */
import { createServer, type RequestListener, type Server } from "node:http";
import { Executor, type ExecutorOptions, type Store } from "@stepwise/engine";
import { DEV_SIGNING_KEY } from "@stepwise/protocol";
import { createApi, createCheckpointHandler, DEFAULT_MAX_BODY_BYTES } from "@stepwise/api";
import { startDiscovery } from "./discovery.ts";
import { createListener } from "./listener.ts";
import { createMetrics } from "./metrics.ts";

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
  /** The key people sign in to the dashboard with outside dev mode; without it the dashboard is off (dev mode: open). */
  dashboardKey?: string;
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
  const metrics = createMetrics(options.store);
  const { observe } = options;
  // Callback URLs point at STEPWISE_PUBLIC_URL, else (in dev mode) at this server as it listens (known once it does).
  let listeningAt: string | undefined;
  const publicUrl = () => (typeof options.publicUrl === "function" ? options.publicUrl() : options.publicUrl) ?? listeningAt;
  const executor = new Executor({ ...options, publicUrl, signingKey, observe: observe ? (signal) => (metrics.observe(signal), observe(signal)) : metrics.observe });
  await options.store.migrate();
  if (options.exclusiveStore) await options.store.queue.releaseAllLeases();
  await executor.start();

  const signingKeys = [signingKey, options.signingKeyNext].filter((key): key is string => !!key);
  const api = createApi({
    executor,
    dev: options.dev,
    signingKeys,
    appSigningKeys: options.appSigningKeys,
    eventKey: options.eventKey,
    apiKey: options.apiKey,
    dashboard: options.dev ? { open: true } : { open: false, key: options.dashboardKey },
    metrics: metrics.scrape,
    allowPrivateAppUrls: options.allowPrivateAppUrls,
  });
  const checkpoint = createCheckpointHandler(executor, { dev: options.dev, signingKeys, appSigningKeys: options.appSigningKeys });
  const listener = createListener({ fetch: api.fetch, checkpoint, maxBodyBytes: DEFAULT_MAX_BODY_BYTES, log: executor.log });
  const { server, port } = await listen(listener, options.port, options.host ?? "127.0.0.1");
  const url = `http://${options.host ?? "127.0.0.1"}:${port}`;
  // Its own address serves people on this machine: dev mode only. In production the URL must be
  // the one the outside reaches (a load balancer's), which only the operator knows.
  if (options.dev) listeningAt = `http://${!options.host || options.host === "0.0.0.0" || options.host === "::" ? "127.0.0.1" : options.host.includes(":") ? `[${options.host}]` : options.host}:${port}`;
  const discovery = startDiscovery({ executor, urls: options.appUrls ?? [], signingKey, appSigningKeys: options.appSigningKeys });

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    executor,
    appsSynced: discovery.synced,
    close: (graceMs = 10_000) =>
      (closing ??= (async () => {
        const deadline = Date.now() + graceMs;
        discovery.stop();
        // Stop accepting; idle keep-alive connections are closed so they cannot hold the server open.
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        (server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
        await executor.stop(graceMs);
        // A connection busy when close() began is never closed as idle while its client keeps using
        // it (an app's checkpoints, a poller): its requests get what is left of the grace period,
        // then every connection goes, so close() ends.
        const cut = setTimeout(() => server.closeAllConnections(), Math.max(0, deadline - Date.now()));
        await closed;
        clearTimeout(cut);
        // What the queue still tells in the background was waited for in the executor's stop; the
        // store waits only for what is left of the grace period.
        await options.store.close({ settleMs: Math.max(0, deadline - Date.now()) });
      })()),
  };
}

function listen(listener: RequestListener, port: number, hostname: string) {
  return new Promise<{ server: Server; port: number }>((resolve, reject) => {
    // A client gets 10 s to send its headers and 30 s for the whole request (a batch of events
    // is at most 16 MB), so slow senders cannot hold connections open.
    const server = createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, listener);
    server.once("error", reject);
    server.listen(port, hostname, () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}
