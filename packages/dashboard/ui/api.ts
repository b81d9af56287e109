/**
 * The executor's API as the dashboard calls it: same origin, the session cookie sent by the
 * browser, and every request that changes something carrying the session's CSRF token.
 */
import type { BulkCancelResult, BulkReplayResult, EventPage, FunctionView, RunPage, RunView } from "./types.ts";

let csrf = "";

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: { ...(method !== "GET" && { "x-stepwise-csrf": csrf }), ...(body !== undefined && { "content-type": "application/json" }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    throw new ApiError(`The executor answered ${response.status} with something that is not JSON`, response.status);
  }
  if (!response.ok) throw new ApiError((answer as { error?: string }).error ?? `HTTP ${response.status}`, response.status);
  return answer as T;
}

/** Whether the dashboard may be used now: open (dev), or a session (whose CSRF token is kept). */
export async function session(): Promise<{ signedIn: boolean; open: boolean }> {
  const response = await fetch("/dashboard/session", { credentials: "same-origin" });
  const answer = (await response.json()) as { signedIn: boolean; open: boolean; csrf?: string };
  csrf = answer.csrf ?? "";
  return answer;
}

export async function signIn(key: string): Promise<void> {
  const answer = await call<{ csrf: string }>("POST", "/dashboard/sign-in", { key });
  csrf = answer.csrf;
}

export const signOut = () => call<{ ok: true }>("POST", "/dashboard/sign-out", {});

const query = (params: Record<string, string | undefined>) => {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) search.set(name, value);
  return search.size > 0 ? `?${search}` : "";
};

export const api = {
  runs: (params: Record<string, string | undefined>) => call<RunPage>("GET", `/api/runs${query(params)}`),
  run: (id: string) => call<RunView>("GET", `/api/runs/${encodeURIComponent(id)}`),
  act: (id: string, action: "cancel" | "pause" | "resume" | "replay") => call<RunView>("POST", `/api/runs/${encodeURIComponent(id)}/${action}`),
  rerun: (id: string, body: { fromStep: string; output?: unknown }) => call<RunView>("POST", `/api/runs/${encodeURIComponent(id)}/rerun`, body),
  bulkCancel: (params: Record<string, string | undefined>) => call<BulkCancelResult>("POST", `/api/runs/cancel${query(params)}`),
  bulkReplay: (params: Record<string, string | undefined>) => call<BulkReplayResult>("POST", `/api/runs/replay${query(params)}`),
  events: (params: Record<string, string | undefined>) => call<EventPage>("GET", `/api/events${query(params)}`),
  event: (id: string) => call<EventPage["events"][number]>("GET", `/api/events/${encodeURIComponent(id)}`),
  send: (event: { name: string; data: unknown }) => call<{ ids: string[] }>("POST", "/api/events", event),
  functions: () => call<{ functions: FunctionView[] }>("GET", "/api/functions"),
  pauseFunction: (id: string) => call<FunctionView>("POST", `/api/functions/${encodeURIComponent(id)}/pause`),
  resumeFunction: (id: string, held: "run" | "skip") => call<{ resumed: number; skipped: number }>("POST", `/api/functions/${encodeURIComponent(id)}/resume`, { held }),
};
