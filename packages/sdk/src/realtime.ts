/**
 * `@stepwise/sdk/realtime`: follow one run from a browser (or any runtime with `fetch`): its
 * snapshot, steps and status as they move, and what it publishes, until it ends. The stream
 * reconnects by itself when the connection drops or the executor ends it, and resumes after the
 * last message it delivered, so no message arrives twice or goes missing while the executor
 * still keeps it.
 *
 * ```ts
 * import { subscribe } from "@stepwise/sdk/realtime";
 * const { url } = await fetch(`/runs/${runId}/stream-token`).then((r) => r.json()); // stepwise.streamToken(runId) on your server
 * const sub = subscribe(url, { onMessage: (m) => m.topic === "tokens" && print(m.data) });
 * const run = await sub.done; // { status: "completed", output, … }
 * ```
 *
 * No dependencies: it bundles small for a page.
 */
import type { RunMessage } from "@stepwise/protocol";

/** A run as the stream sends it (the run API's view; `steps` only in the snapshot). */
export interface StreamedRun {
  id: string;
  status: string;
  output?: unknown;
  error?: { name: string; message: string } | null;
  steps?: StreamedStep[];
  [field: string]: unknown;
}

/** A step as the stream sends it. */
export interface StreamedStep {
  id: string;
  name: string;
  status: string;
  [field: string]: unknown;
}

export interface StreamHandlers {
  /** The whole run, first and again after each reconnect. */
  onSnapshot?(run: StreamedRun): void;
  /** A step that moved. */
  onStep?(step: StreamedStep): void;
  /** The run's status, pause or end moved. */
  onRun?(run: StreamedRun): void;
  /** Something the run published, in order, each once. */
  onMessage?(message: RunMessage): void;
  /** The stream dropped and will reconnect (the error says why). */
  onReconnect?(error: Error): void;
}

export interface SubscribeOptions {
  /** Only these topics' messages (default: all). */
  topics?: readonly string[];
  /** Stops the subscription (as `close()`). */
  signal?: AbortSignal;
  /** The fetch to use (default the global one). */
  fetch?: typeof fetch;
  /** First pause before a reconnect, doubled up to 10 s while the stream keeps failing (default 500 ms). */
  retryMs?: number;
}

export interface Subscription {
  /** The run as it ended; rejects with a {@link StreamRefusedError} when the executor refuses the stream (expired token, no such run), or an AbortError once closed. */
  done: Promise<StreamedRun>;
  /** Stops reading; nothing is delivered after it. */
  close(): void;
}

/** The executor refused the stream: an expired or wrong token (401), a run it does not have (404). Not retried. */
export class StreamRefusedError extends Error {
  override name = "StreamRefusedError";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const LONGEST_PAUSE_MS = 10_000;

/** Follows the run whose stream is at `url` (`stepwise.streamToken(runId).url`, or the API's with a key in `fetch`). */
export function subscribe(url: string, handlers: StreamHandlers, options: SubscribeOptions = {}): Subscription {
  const controller = new AbortController();
  if (options.signal?.aborted) controller.abort();
  else options.signal?.addEventListener("abort", () => controller.abort(), { once: true });
  const doFetch = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => globalThis.fetch(input, init));
  const done = follow(url, handlers, options, controller.signal, doFetch);
  // A caller that only uses the handlers must not see an unhandled rejection on close.
  done.catch(() => {});
  return { done, close: () => controller.abort() };
}

async function follow(url: string, handlers: StreamHandlers, options: SubscribeOptions, signal: AbortSignal, doFetch: typeof fetch): Promise<StreamedRun> {
  let after = 0;
  let pause = options.retryMs ?? 500;
  for (;;) {
    if (signal.aborted) throw abortError();
    let ended: StreamedRun | undefined;
    let problem: Error;
    try {
      const target = new URL(url, (globalThis as { location?: { href: string } }).location?.href);
      if (after > 0) target.searchParams.set("after", String(after));
      for (const topic of options.topics ?? []) target.searchParams.append("topic", topic);
      const response = await doFetch(target, { signal, headers: { accept: "text/event-stream" } });
      if (response.status === 401 || response.status === 403 || response.status === 404 || response.status === 400) {
        const text = await response.text().catch(() => "");
        throw new StreamRefusedError(response.status, `The run's stream was refused (${response.status}): ${messageOf(text)}`);
      }
      if (!response.ok || !response.body) throw new Error(`the stream answered ${response.status}`);
      for await (const event of serverSentEvents(response.body)) {
        if (event.id && /^\d+$/.test(event.id)) after = Math.max(after, Number(event.id));
        const data = JSON.parse(event.data) as unknown;
        if (event.event === "snapshot") handlers.onSnapshot?.(data as StreamedRun);
        else if (event.event === "step") handlers.onStep?.(data as StreamedStep);
        else if (event.event === "run") handlers.onRun?.(data as StreamedRun);
        else if (event.event === "message") handlers.onMessage?.(data as RunMessage);
        else if (event.event === "end") ended = data as StreamedRun;
        pause = options.retryMs ?? 500;
      }
      if (ended) return ended;
      problem = new Error("the executor ended the stream before the run ended");
    } catch (error) {
      if (error instanceof StreamRefusedError) throw error;
      if (signal.aborted) throw abortError();
      problem = error instanceof Error ? error : new Error(String(error));
    }
    handlers.onReconnect?.(problem);
    await sleep(pause, signal);
    pause = Math.min(pause * 2, LONGEST_PAUSE_MS);
  }
}

/** The events of a `text/event-stream` body (comments skipped). */
async function* serverSentEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<{ event: string; id: string; data: string }> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      // Line ends may be CRLF or CR, split across chunks: a CR at the end waits for the next chunk.
      buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n/g, "\n").replace(/\r(?!$)/g, "\n");
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        let id = "";
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line === "" || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event = value;
          else if (field === "id") id = value;
          else if (field === "data") data.push(value);
        }
        if (data.length > 0) yield { event, id, data: data.join("\n") };
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function messageOf(text: string): string {
  try {
    const error = (JSON.parse(text) as { error?: unknown }).error;
    if (typeof error === "string") return error;
  } catch {
    // not JSON: the text itself
  }
  return text.slice(0, 300) || "(no message)";
}

function abortError(): Error {
  const error = new Error("The subscription was closed");
  error.name = "AbortError";
  return error;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
