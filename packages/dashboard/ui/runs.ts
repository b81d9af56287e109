/**
 * The run list: filters (function, statuses, started since/until) kept in the URL, the list
 * refreshed every second (longer on demand, up to the API's largest page), and the bulk actions on
 * every run the filters select, page by page with their progress.
 */
import { api, ApiError } from "./api.ts";
import { fill, h, since, statusBadge, when } from "./dom.ts";
import { poll } from "./poll.ts";
import type { BulkCancelResult, BulkReplayResult, RunSummary } from "./types.ts";

/** Runs a page adds, and the most the live list shows (the API's largest page). */
const PAGE = 50;
const MAX_SHOWN = 500;

const STATUSES = ["queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled", "skipped"];

export function runsPage(root: HTMLElement, params: URLSearchParams): () => void {
  const filters = { function: params.get("function") ?? "", status: params.get("status") ?? "", since: params.get("since") ?? "", until: params.get("until") ?? "", q: params.get("q") ?? "" };
  const chosen = new Set(filters.status.split(",").filter(Boolean));
  const functionSelect = h("select", { name: "function" }, h("option", { value: "" }, "All functions"));
  void api.functions().then(({ functions }) => {
    for (const fn of functions) functionSelect.append(h("option", { value: fn.id, selected: fn.id === filters.function }, fn.id));
  });
  const sinceInput = h("input", { type: "datetime-local", name: "since", value: local(filters.since) });
  const untilInput = h("input", { type: "datetime-local", name: "until", value: local(filters.until) });
  const qInput = h("input", { name: "q", size: 40, value: filters.q, placeholder: `CEL, e.g. event.data.plan == "pro"` });
  const statusBoxes = STATUSES.map((status) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "status", value: status, checked: chosen.has(status) }), status));
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: (event: Event) => {
        event.preventDefault();
        const next = new URLSearchParams();
        if (functionSelect.value) next.set("function", functionSelect.value);
        const statuses = statusBoxes.map((label) => label.querySelector("input")!).filter((box) => box.checked).map((box) => box.value);
        if (statuses.length > 0) next.set("status", statuses.join(","));
        if (sinceInput.value) next.set("since", new Date(sinceInput.value).toISOString());
        if (untilInput.value) next.set("until", new Date(untilInput.value).toISOString());
        if (qInput.value.trim()) next.set("q", qInput.value.trim());
        location.hash = `#/runs${next.size > 0 ? `?${next}` : ""}`;
      },
    },
    functionSelect,
    h("span", { class: "statuses" }, statusBoxes),
    h("label", {}, "since ", sinceInput),
    h("label", {}, "until ", untilInput),
    h("label", {}, "where ", qInput),
    h("button", { type: "submit" }, "Filter"),
  );

  const query = { function: filters.function, status: filters.status, since: filters.since, until: filters.until, q: filters.q };
  const filtered = Object.values(query).some(Boolean);
  const error = h("p", { class: "error", role: "alert" });
  const body = h("tbody");
  const progress = h("p", { class: "progress", role: "status" });
  const more = h("button", { class: "more", hidden: true }, "Older runs");
  const narrow = h("p", { class: "hint", hidden: true }, `The list shows the newest ${MAX_SHOWN} runs: narrow the filters to see older ones.`);
  // The list is one live page of the newest runs, `shown` long: older runs make it longer, so
  // runs that arrive push the oldest down the page rather than out of it.
  let shown = PAGE;

  const draw = (runs: RunSummary[]) =>
    fill(
      body,
      runs.length === 0 ? h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No runs match.")) : null,
      runs.map((run) =>
        h(
          "tr",
          { "data-run": run.id },
          h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(run.id)}` }, run.id)),
          h("td", {}, run.functionId),
          h("td", {}, statusBadge(run.status, run.paused)),
          h("td", {}, when(run.startedAt)),
          h("td", {}, run.endedAt ? since(run.startedAt, run.endedAt) : "…"),
        ),
      ),
    );

  const refresh = async () => {
    try {
      const page = await api.runs({ ...query, limit: String(shown) });
      // With `where`, a short page may end before the list does (the executor looks at so many runs a request).
      const searching = !!query.q && !!page.next && page.runs.length < shown;
      more.hidden = !page.next || shown >= MAX_SHOWN || searching;
      narrow.hidden = !page.next || (shown < MAX_SHOWN && !searching);
      narrow.textContent = searching
        ? "The executor stops searching after a couple of thousand runs per request: narrow the other filters (function, since, until) to search older runs."
        : `The list shows the newest ${MAX_SHOWN} runs: narrow the filters to see older ones.`;
      draw(page.runs);
      error.textContent = "";
    } catch (failure) {
      error.textContent = failure instanceof ApiError ? failure.message : String(failure);
      throw failure;
    }
  };
  more.addEventListener("click", () => {
    shown = Math.min(MAX_SHOWN, shown + PAGE);
    more.hidden = true;
    void refresh();
  });

  const bulk = (action: "cancel" | "replay") => async () => {
    if (!confirm(`${action === "cancel" ? "Cancel" : "Replay"} every run these filters select?`)) return;
    let done = 0;
    let matched = 0;
    let next: string | null = null;
    const verb = action === "cancel" ? "cancelled" : "replayed";
    try {
      do {
        const page: BulkCancelResult | BulkReplayResult = action === "cancel" ? await api.bulkCancel({ ...query, cursor: next ?? undefined }) : await api.bulkReplay({ ...query, cursor: next ?? undefined });
        matched += page.matched;
        done += "cancelled" in page ? page.cancelled : page.replayed.length;
        next = page.next;
        progress.textContent = `${verb} ${done} of ${matched} run(s)${next ? " so far…" : ""}`;
      } while (next);
      progress.textContent = `Done: ${verb} ${done} run(s).`;
    } catch (failure) {
      progress.textContent = `Stopped after ${done}: ${failure instanceof ApiError ? failure.message : String(failure)}`;
    }
    await refresh();
  };

  fill(
    root,
    h("h1", {}, "Runs"),
    form,
    filtered
      ? h(
          "div",
          { class: "bulk" },
          h("button", { class: "danger", onclick: bulk("cancel") }, "Cancel all matching"),
          h("button", { onclick: bulk("replay") }, "Replay all matching"),
          progress,
        )
      : h("p", { class: "hint" }, "Filter the list to cancel or replay every run it selects."),
    error,
    h("table", { class: "runs" }, h("thead", {}, h("tr", {}, ["Run", "Function", "Status", "Started", "Took"].map((title) => h("th", {}, title)))), body),
    more,
    narrow,
  );
  return poll(refresh);
}

/** An ISO time as a datetime-local input shows it (the viewer's zone). */
function local(iso: string): string {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return new Date(date.getTime() - date.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
}
