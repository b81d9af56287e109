/**
 * Events: a form to send one (its data checked as JSON before it goes, the executor's refusal
 * shown as it said it), and the latest events with the runs each started, refreshed every second.
 */
import { api, ApiError } from "./api.ts";
import { fill, h, json, statusBadge, when } from "./dom.ts";
import { poll } from "./poll.ts";

export function eventsPage(root: HTMLElement): () => void {
  const name = h("input", { name: "name", placeholder: "app/user.signup", required: true });
  const data = h("textarea", { name: "data", rows: 4, placeholder: '{ "email": "ada@example.com" }' }, "{}");
  const sent = h("p", { class: "sent", role: "status" });
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    {
      class: "send",
      onsubmit: (event: Event) => {
        event.preventDefault();
        let parsed: unknown;
        try {
          parsed = JSON.parse(data.value || "{}");
        } catch (failure) {
          error.textContent = `The data is not JSON: ${failure instanceof Error ? failure.message : String(failure)}`;
          sent.textContent = "";
          return;
        }
        api.send({ name: name.value.trim(), data: parsed }).then(
          ({ ids }) => {
            error.textContent = "";
            sent.textContent = `Sent: event ${ids[0]}`;
            void refresh();
          },
          (failure: unknown) => {
            sent.textContent = "";
            error.textContent = failure instanceof ApiError ? failure.message : String(failure);
          },
        );
      },
    },
    h("h2", {}, "Send an event"),
    h("label", {}, "Name ", name),
    h("label", {}, "Data ", data),
    h("button", { type: "submit" }, "Send"),
    sent,
    error,
  );
  const filter = h("input", { name: "filter", placeholder: "only events named…" });
  const list = h("div", { class: "events" });
  const refresh = async () => {
    const page = await api.events({ name: filter.value.trim() || undefined });
    fill(
      list,
      page.events.length === 0 ? h("p", { class: "empty" }, "No events.") : null,
      page.events.map((event) =>
        h(
          "details",
          { class: "event", "data-event": event.id },
          h(
            "summary",
            {},
            h("code", {}, event.name),
            ` ${when(event.receivedAt)} · `,
            event.runs.length === 0 ? "started no run" : event.runs.map((run) => h("a", { href: `#/runs/${encodeURIComponent(run.id)}`, class: "run-link" }, statusBadge(run.status, run.paused), ` ${run.functionId}`)),
          ),
          h("p", {}, `Event ${event.id}`),
          json(event.data),
        ),
      ),
    );
  };
  filter.addEventListener("change", () => void refresh());
  fill(root, h("h1", {}, "Events"), form, h("h2", {}, "Latest events"), filter, list);
  return poll(async () => {
    // A summary the viewer opened stays open: only redraw when none is.
    if (!list.querySelector("details[open]")) await refresh();
  });
}
