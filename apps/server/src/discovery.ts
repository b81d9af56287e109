/**
 * Finds apps by URL (`--app`, `STEPWISE_APP_URLS`): asks each `GET /api/durable` for its
 * functions and registers them, retrying until the app is up, then asking again now and then
 * so a redeployed app's new functions appear without a restart. An answer that did not change
 * is registered again only once a minute, so an idle executor does next to nothing.
 */
import { signingKeyOf, type Executor } from "@stepwise/engine";
import { HEADERS, requestTarget, sign } from "@stepwise/protocol";

export interface DiscoveryOptions {
  executor: Executor;
  urls: string[];
  /** The executor signs every request to an app, this one included. */
  signingKey: string;
  /** Apps with keys of their own, by app ID (the GET is signed again with it once the app says who it is). */
  appSigningKeys?: Readonly<Record<string, string>>;
  /** Pause between syncs once an app answered. */
  refreshMs?: number;
  /** Pause between tries while an app does not answer yet. */
  retryMs?: number;
}

export function startDiscovery(options: DiscoveryOptions): { stop(): void; synced: Promise<void> } {
  let stopped = false;
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const firstSyncs = options.urls.map(
    (url) =>
      new Promise<void>((resolve) => {
        let announcedDown = false;
        const last = { description: "", at: 0 };
        const attempt = async () => {
          if (stopped) return resolve();
          try {
            await syncFrom(options, url, last);
            resolve();
            schedule(options.refreshMs ?? 10_000);
          } catch (error) {
            if (!announcedDown) {
              const cause = error instanceof Error ? error.message : String(error);
              options.executor.log.warn(`app at ${url} not reachable yet (${cause}); retrying`);
              announcedDown = true;
            }
            schedule(options.retryMs ?? 1_000);
          }
        };
        const schedule = (ms: number) => {
          if (stopped) return;
          const timer = setTimeout(() => {
            timers.delete(timer);
            void attempt();
          }, ms);
          timers.add(timer);
        };
        void attempt();
      }),
  );
  return {
    synced: Promise.all(firstSyncs).then(() => undefined),
    stop() {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
    },
  };
}

/** Registers again after this long even when the app's answer did not change (the record may have). */
const RESYNC_UNCHANGED_MS = 60_000;

async function syncFrom(options: DiscoveryOptions, url: string, last: { description: string; at: number }): Promise<void> {
  const { executor } = options;
  let description = await describe(url, options.signingKey);
  // An app with its own key tells an unsigned caller only its ID: ask again, signed with that key.
  const appId = description.appId;
  if (!Array.isArray(description.functions) && typeof appId === "string") {
    const own = signingKeyOf(options, appId);
    if (own !== options.signingKey) description = await describe(url, own);
  }
  const text = JSON.stringify(description);
  if (text === last.description && Date.now() - last.at < RESYNC_UNCHANGED_MS) return;
  // The URL we were given is how this executor reaches the app, whatever the app thinks it is.
  const before = await executor.listFunctions();
  // Registered again only because a minute passed: not a sign that a deployment found gone is back.
  const synced = await executor.syncApp({ ...description, url }, { revive: text !== last.description });
  const known = new Set(before.map((fn) => fn.id));
  if (synced.functions.some((id) => !known.has(id))) {
    executor.log.info(`app ${synced.appId} synced from ${url}${synced.version ? ` (version ${synced.version})` : ""}: ${synced.functions.join(", ")}`);
  }
  Object.assign(last, { description: text, at: Date.now() });
}

async function describe(url: string, signingKey: string): Promise<Record<string, unknown>> {
  const response = await fetch(url, {
    headers: { [HEADERS.signature]: await sign(signingKey, { method: "GET", target: requestTarget(url), body: "" }) },
    signal: AbortSignal.timeout(5_000),
    redirect: "manual",
  });
  if (!response.ok) throw new Error(`GET answered HTTP ${response.status}${response.status >= 300 && response.status < 400 ? " (a redirect, which discovery does not follow)" : ""}`);
  return (await response.json()) as Record<string, unknown>;
}
