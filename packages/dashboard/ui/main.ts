/**
 * The dashboard's entry: signs in when it must, draws the frame and shows the page the URL's
 * hash names (#/runs, #/runs/<id>, #/events, #/functions). Each page polls what it shows while
 * it is on screen, so runs appear and move without a reload.
 */
import { ApiError, session, signIn, signOut } from "./api.ts";
import { fill, h } from "./dom.ts";
import { eventsPage } from "./events.ts";
import { functionsPage } from "./functions.ts";
import { runPage } from "./run.ts";
import { runsPage } from "./runs.ts";

/** What a page returns: how to stop its polling when another page replaces it. */
export type Page = () => void;

const root = document.getElementById("app")!;
let leave: Page | undefined;
let signedInOpen = false;

function frame(active: string, content: HTMLElement): HTMLElement {
  const link = (hash: string, label: string) => h("a", { href: hash, class: active === hash ? "active" : "" }, label);
  return h(
    "div",
    { class: "frame" },
    h(
      "header",
      {},
      h("strong", { class: "brand" }, "Stepwise"),
      h("nav", {}, link("#/runs", "Runs"), link("#/events", "Events"), link("#/functions", "Functions")),
      signedInOpen ? null : h("button", { class: "link", onclick: () => void signOut().then(() => location.reload()) }, "Sign out"),
    ),
    h("main", {}, content),
  );
}

function route(): void {
  leave?.();
  leave = undefined;
  const hash = location.hash || "#/runs";
  const content = h("div", { class: "page" });
  const [path, search] = hash.slice(1).split("?");
  const params = new URLSearchParams(search ?? "");
  const run = /^\/runs\/(.+)$/.exec(path ?? "");
  if (run) leave = runPage(content, decodeURIComponent(run[1]!));
  else if (path === "/events") leave = eventsPage(content);
  else if (path === "/functions") leave = functionsPage(content);
  else leave = runsPage(content, params);
  fill(root, frame(run ? "#/runs" : `#${path === "/events" || path === "/functions" ? path : "/runs"}`, content));
}

function signInForm(message?: string): void {
  const key = h("input", { type: "password", name: "key", placeholder: "STEPWISE_DASHBOARD_KEY", autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", role: "alert" }, message ?? "");
  const form = h(
    "form",
    {
      class: "sign-in",
      onsubmit: (event: Event) => {
        event.preventDefault();
        signIn(key.value).then(start, (failure: unknown) => {
          error.textContent = failure instanceof ApiError ? failure.message : String(failure);
        });
      },
    },
    h("h1", {}, "Stepwise"),
    h("p", {}, "Sign in with the executor's dashboard key."),
    key,
    h("button", { type: "submit" }, "Sign in"),
    error,
  );
  fill(root, form);
  key.focus();
}

async function start(): Promise<void> {
  const state = await session();
  if (!state.signedIn && !state.open) return signInForm();
  signedInOpen = state.open;
  window.onhashchange = route;
  route();
}

void start().catch((error: unknown) => fill(root, h("p", { class: "error" }, `The dashboard could not start: ${String(error)}`)));
