/** A few helpers over the DOM: the dashboard has no framework, so its code is what the page does. */

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | undefined | ((event: Event) => void)>;

/** An element with attributes (`on…` are listeners) and children (text is escaped by construction). */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Array<Child | Child[]>): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(name.slice(2).toLowerCase(), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Replaces everything in `parent` with `children`. */
export function fill(parent: Element, ...children: Array<Child | Child[]>): void {
  parent.replaceChildren(...children.flat().filter((child): child is Node | string | number => child !== null && child !== undefined && child !== false).map((child) => (child instanceof Node ? child : String(child))));
}

/** A duration as people read it: 850ms, 2.4s, 3m 20s, 5h 2m. */
export function duration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  const seconds = Math.round(ms / 1_000);
  if (seconds < 3_600) return `${Math.floor(seconds / 60)}m ${seconds % 60}s`;
  return `${Math.floor(seconds / 3_600)}h ${Math.floor((seconds % 3_600) / 60)}m`;
}

export function since(from: string, to?: string): string {
  return duration((to ? Date.parse(to) : Date.now()) - Date.parse(from));
}

/** A time in the viewer's zone, to the second. */
export function when(iso: string): string {
  const date = new Date(iso);
  return `${date.toLocaleDateString(undefined, { month: "short", day: "numeric" })} ${date.toLocaleTimeString(undefined, { hour12: false })}`;
}

export function statusBadge(status: string, paused?: unknown): HTMLElement {
  return h("span", { class: `badge status-${status}`, "data-status": status }, status, paused ? " · paused" : "");
}

/** Pretty JSON in a block of its own (a value the viewer may copy). */
export function json(value: unknown): HTMLElement {
  return h("pre", { class: "json" }, value === undefined ? "undefined" : JSON.stringify(value, null, 2));
}
