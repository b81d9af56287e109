/**
 * One run: what it is and where it came from, its actions (cancel, pause, resume, replay, rerun
 * from a chosen step with an edited output), a waterfall of its steps (each a bar from its start
 * to its end on the run's time axis: runs, sleeps and waits alike, with attempts and the tokens a
 * model call spent), each step's
 * output or error, and the event that triggered it. Polled while the run is live.
 */
import { api, ApiError } from "./api.ts";
import { duration, fill, h, json, since, statusBadge, when } from "./dom.ts";
import { poll } from "./poll.ts";
import type { RunView, StepView } from "./types.ts";

const LIVE = new Set(["queued", "running", "sleeping", "waiting"]);

export function runPage(root: HTMLElement, runId: string): () => void {
  const header = h("section", { class: "run-header" });
  const actions = h("section", { class: "actions" });
  const message = h("p", { class: "error", role: "alert" });
  const timeline = h("section", { class: "timeline" });
  const detail = h("section", { class: "step-detail" });
  const trigger = h("section", { class: "trigger" });
  let selected: string | undefined;
  let run: RunView | undefined;
  let eventShown = false;

  const act = (action: "cancel" | "pause" | "resume" | "replay") => async () => {
    try {
      const answer = await api.act(runId, action);
      message.textContent = "";
      if (action === "replay") location.hash = `#/runs/${encodeURIComponent(answer.id)}`;
      else await refresh();
    } catch (failure) {
      message.textContent = failure instanceof ApiError ? failure.message : String(failure);
    }
  };

  const rerunForm = (current: RunView) => {
    const step = h("select", { name: "fromStep" }, current.steps.map((s) => h("option", { value: s.id }, `${s.name} (${s.kind})`)));
    const replace = h("input", { type: "checkbox", name: "replace" });
    const output = h("textarea", { name: "output", rows: 3, placeholder: "the step's new output, as JSON" });
    const chosen = () => current.steps.find((s) => s.id === step.value);
    const prefill = () => {
      const s = chosen();
      output.value = s && s.status === "completed" ? JSON.stringify(s.output ?? null, null, 2) : "";
    };
    step.addEventListener("change", prefill);
    prefill();
    return h(
      "form",
      {
        class: "rerun",
        onsubmit: (event: Event) => {
          event.preventDefault();
          const body: { fromStep: string; output?: unknown } = { fromStep: step.value };
          if (replace.checked) {
            try {
              body.output = JSON.parse(output.value);
            } catch (error) {
              message.textContent = `The output is not JSON: ${error instanceof Error ? error.message : String(error)}`;
              return;
            }
          }
          api.rerun(runId, body).then(
            (answer) => (location.hash = `#/runs/${encodeURIComponent(answer.id)}`),
            (failure: unknown) => (message.textContent = failure instanceof ApiError ? failure.message : String(failure)),
          );
        },
      },
      h("strong", {}, "Rerun from "),
      step,
      h("label", { class: "check" }, replace, " with this output:"),
      output,
      h("button", { type: "submit" }, "Rerun"),
    );
  };

  const drawDetail = () => {
    const step = run?.steps.find((s) => s.id === selected);
    if (!step) return fill(detail, run && run.status === "completed" ? [h("h2", {}, "Output"), json(run.output)] : run?.error ? [h("h2", {}, "Error"), errorView(run.error)] : null);
    fill(
      detail,
      h("h2", {}, `Step "${step.name}"`),
      h("p", {}, `${step.kind}, ${step.status}, ${step.attempts} attempt(s), ${step.endedAt ? since(step.startedAt, step.endedAt) : "still going"}${step.usage ? `, ${tokens(step.usage)}${step.usage.model ? ` (${step.usage.model})` : ""}` : ""}`),
      step.error ? errorView(step.error, step.status === "completed" ? "An earlier attempt failed" : undefined) : null,
      step.status === "completed" ? [h("h3", {}, "Output"), json(step.output)] : null,
    );
  };

  const refresh = async () => {
    try {
      run = await api.run(runId);
    } catch (failure) {
      message.textContent = failure instanceof ApiError ? failure.message : String(failure);
      throw failure;
    }
    const current = run;
    const live = LIVE.has(current.status);
    fill(
      header,
      h("h1", {}, "Run ", h("code", {}, current.id)),
      h(
        "p",
        {},
        statusBadge(current.status, current.paused),
        ` ${current.functionId} · started ${when(current.startedAt)}${current.appVersion ? ` on version ${current.appVersion}` : ""} · ${current.endedAt ? `took ${since(current.startedAt, current.endedAt)}` : `running for ${since(current.startedAt)}`}${current.usage ? ` · ${tokens(current.usage)}` : ""}`,
      ),
      current.replayOf
        ? h("p", {}, current.rerunFrom ? `Rerun from step "${current.rerunFrom}" of ` : "Replay of ", h("a", { href: `#/runs/${encodeURIComponent(current.replayOf)}` }, current.replayOf))
        : null,
      current.parentRunId ? h("p", {}, "Invoked by ", h("a", { href: `#/runs/${encodeURIComponent(current.parentRunId)}` }, current.parentRunId)) : null,
      current.error ? errorView(current.error) : null,
    );
    if (!actions.querySelector("form.rerun") || !live) {
      fill(
        actions,
        live ? h("button", { class: "danger", onclick: act("cancel") }, "Cancel") : null,
        live && !current.paused ? h("button", { onclick: act("pause") }, "Pause") : null,
        live && current.paused ? h("button", { onclick: act("resume") }, "Resume") : null,
        h("button", { onclick: act("replay") }, "Replay"),
        current.steps.length > 0 ? rerunForm(current) : null,
      );
    } else {
      // Keep the form the viewer may be editing; the buttons follow the run.
      for (const button of [...actions.querySelectorAll(":scope > button")]) button.remove();
      actions.prepend(
        ...[
          h("button", { class: "danger", onclick: act("cancel") }, "Cancel"),
          current.paused ? h("button", { onclick: act("resume") }, "Resume") : h("button", { onclick: act("pause") }, "Pause"),
          h("button", { onclick: act("replay") }, "Replay"),
        ],
      );
    }
    fill(timeline, h("h2", {}, "Timeline"), waterfall(current, (id) => ((selected = id), drawDetail())));
    drawDetail();
    if (!eventShown) {
      eventShown = true;
      void api.event(current.eventId).then(
        (event) => fill(trigger, h("h2", {}, "Triggering event"), h("p", {}, h("code", {}, event.name), ` ${event.id}`), json(event.data)),
        () => fill(trigger, h("h2", {}, "Triggering event"), h("p", {}, `${current.eventId} (no longer stored)`)),
      );
    }
    if (!live) stop();
  };

  fill(root, header, message, actions, timeline, detail, trigger);
  const stop = poll(refresh);
  return stop;
}

/** Tokens a model call (or a run's calls) spent, as a reader counts them. */
function tokens(usage: { inputTokens: number; outputTokens: number }): string {
  return `${usage.inputTokens.toLocaleString("en")} in / ${usage.outputTokens.toLocaleString("en")} out tokens`;
}

function errorView(error: { name: string; message: string; stack?: string }, heading?: string): HTMLElement {
  return h(
    "details",
    { class: "error-view", open: !heading },
    h("summary", {}, heading ? `${heading}: ` : "", h("strong", {}, `${error.name}: `), error.message),
    error.stack ? h("pre", {}, error.stack) : null,
  );
}

/** The steps as bars on the run's time axis, each row clickable for its output. */
function waterfall(run: RunView, select: (stepId: string) => void): HTMLElement {
  if (run.steps.length === 0) return h("p", { class: "empty" }, "No step yet.");
  const start = Date.parse(run.startedAt);
  const end = Math.max(run.endedAt ? Date.parse(run.endedAt) : Date.now(), ...run.steps.map((s) => Date.parse(s.endedAt ?? new Date().toISOString())));
  const span = Math.max(1, end - start);
  const row = (step: StepView) => {
    const from = Date.parse(step.startedAt);
    const to = step.endedAt ? Date.parse(step.endedAt) : Date.now();
    const left = ((from - start) / span) * 100;
    const width = Math.max(0.5, ((to - from) / span) * 100);
    // Through the CSSOM: the page's policy allows no inline style attributes.
    const bar = h("span", { class: "bar" });
    bar.style.left = `${left.toFixed(2)}%`;
    bar.style.width = `${width.toFixed(2)}%`;
    return h(
      "div",
      { class: `step kind-${step.kind} status-${step.status}`, "data-step": step.id, role: "button", tabindex: 0, onclick: () => select(step.id) },
      h("span", { class: "name" }, step.name),
      h("span", { class: "kind" }, step.kind),
      h("span", { class: "track" }, bar),
      h("span", { class: "took" }, step.endedAt ? duration(to - from) : "…", step.attempts > 1 ? ` · ${step.attempts} attempts` : "", step.usage ? ` · ${tokens(step.usage)}` : ""),
      h("span", { class: `badge status-${step.status}` }, step.status),
    );
  };
  return h("div", { class: "waterfall" }, run.steps.map(row));
}
