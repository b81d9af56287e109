/** Functions: each with its triggers and configuration, paused or not, with pause and resume. */
import { api, ApiError } from "./api.ts";
import { fill, h, json } from "./dom.ts";
import { poll } from "./poll.ts";
import type { FunctionView } from "./types.ts";

/** The older deployments still serving runs that started on them, if any. */
function deploymentsNote(fn: FunctionView): string {
  const older = (fn.deployments ?? []).filter((d) => d.version !== fn.appVersion);
  const pinned = older.filter((d) => d.url !== undefined);
  return pinned.length === 0 ? "" : ` · earlier versions still served at their own URLs: ${pinned.map((d) => `${d.version} (${d.url})`).join(", ")}`;
}

export function functionsPage(root: HTMLElement): () => void {
  const list = h("div", { class: "functions" });
  const message = h("p", { class: "error", role: "alert" });
  const done = h("p", { class: "progress", role: "status" });
  const run = (work: () => Promise<string>) => async () => {
    try {
      done.textContent = await work();
      message.textContent = "";
    } catch (failure) {
      message.textContent = failure instanceof ApiError ? failure.message : String(failure);
    }
    await refresh();
  };
  const card = (fn: FunctionView) =>
    h(
      "article",
      { class: `function${fn.paused ? " paused" : ""}`, "data-function": fn.id },
      h("h2", {}, fn.name, " ", h("code", {}, fn.id), fn.paused ? h("span", { class: "badge status-paused" }, "paused") : null),
      h("p", {}, "Triggers: ", fn.triggers.map((t) => ("event" in t && t.event ? `event ${t.event}${t.if ? ` if ${t.if}` : ""}` : `cron ${(t as { cron?: string }).cron}`)).join(", ")),
      fn.appVersion ? h("p", { class: "versions" }, "Version ", h("code", {}, fn.appVersion), deploymentsNote(fn)) : null,
      h(
        "div",
        { class: "actions" },
        fn.paused
          ? [
              h("button", { onclick: run(async () => describe(await api.resumeFunction(fn.id, "run"), fn.id)) }, "Resume and run held runs"),
              h("button", { onclick: run(async () => describe(await api.resumeFunction(fn.id, "skip"), fn.id)) }, "Resume and skip held runs"),
            ]
          : h("button", { onclick: run(async () => (await api.pauseFunction(fn.id), `${fn.id} paused: its new runs are held.`)) }, "Pause"),
        h("a", { href: `#/runs?function=${encodeURIComponent(fn.id)}` }, "Its runs"),
      ),
      h("details", {}, h("summary", {}, "Configuration"), json(fn.config)),
    );
  const refresh = async () => {
    const { functions } = await api.functions();
    if (list.querySelector("details[open]")) return;
    fill(list, functions.length === 0 ? h("p", { class: "empty" }, "No function registered yet: start an app that serves /api/durable.") : functions.map(card));
  };
  fill(root, h("h1", {}, "Functions"), message, done, list);
  return poll(refresh, 2_000);
}

function describe(answer: { resumed: number; skipped: number }, id: string): string {
  return `${id} resumed: ${answer.resumed} held run(s) started, ${answer.skipped} skipped.`;
}
