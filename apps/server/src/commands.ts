/**
 * The `stepwise` commands that talk to a running executor over its HTTP API, as a script or a
 * person at a terminal would: send an event or a signal, list runs, show one run's steps, cancel, replay or
 * rerun a run, and cancel or replay every run a filter selects (page by page, with progress).
 * Tables for people, `--json` for scripts; the exit code says how it went (see EXIT).
 */
import { parseArgs } from "node:util";
import type { SignalSent } from "@stepwise/protocol";
import { formatDuration, type BulkCancelResult, type BulkReplayResult, type RunPage, type RunSummary, type RunView } from "@stepwise/engine";

export const CLIENT_COMMANDS = ["send", "signal", "runs", "run", "cancel", "replay", "rerun"] as const;
type ClientCommand = (typeof CLIENT_COMMANDS)[number];

/** Exit codes a script can tell apart. */
export const EXIT = { ok: 0, failed: 1, usage: 2, notFound: 3 } as const;

export const CLIENT_USAGE = `  stepwise send <event name> [--data '<json>'] [--id <event id>]
  stepwise signal <signal> [--data '<json>'] [--id <signal id>]   resumes the one run waiting for it
  stepwise runs [--function ID] [--status S[,S]] [--since ISO] [--until ISO] [--q CEL] [--limit N] [--cursor C]
  stepwise run <run id>
  stepwise cancel <run id> | [--function ID] [--status S[,S]] [--since ISO] [--until ISO] [--q CEL] [--limit N] [--cursor C]
  stepwise replay <run id> | [--function ID] [--status S[,S]] [--since ISO] [--until ISO] [--q CEL] [--limit N] [--cursor C]
  stepwise rerun <run id> --from <step id> [--output '<json>']
    cancel and replay with a filter instead of a run ID act on every run it selects, a page
    at a time (--limit runs per page, default 100), printing progress (and, if a page fails,
    the --cursor to go on from); with --json, the totals and every run a replay started.
    Each takes --url (default STEPWISE_BASE_URL or http://127.0.0.1:8288) and --json (the API's
    answer as it came). Keys from STEPWISE_EVENT_KEY (send, signal) and STEPWISE_API_KEY (the rest).
    Exit codes: 0 done, 1 the executor refused or could not be reached, 2 wrong usage, 3 no such
    run (or, for signal, no run waiting for it: nothing was stored).`;

class CommandError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

/** Runs a client command; returns its exit code. `print` and `fail` are stdout and stderr. */
export async function runClientCommand(
  command: ClientCommand,
  argv: string[],
  io: { print: (line: string) => void; fail: (line: string) => void } = { print: console.log, fail: console.error },
): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        help: { type: "boolean", short: "h", default: false },
        url: { type: "string" },
        json: { type: "boolean", default: false },
        data: { type: "string" },
        id: { type: "string" },
        function: { type: "string" },
        status: { type: "string" },
        since: { type: "string" },
        until: { type: "string" },
        q: { type: "string" },
        limit: { type: "string" },
        cursor: { type: "string" },
        from: { type: "string" },
        output: { type: "string" },
      },
    });
    if (values.help) {
      io.print(`Usage:\n${CLIENT_USAGE}`);
      return EXIT.ok;
    }
    // An empty STEPWISE_BASE_URL is unset, as the SDK reads it.
    const api = new ExecutorApi(values.url || process.env.STEPWISE_BASE_URL || "http://127.0.0.1:8288");
    const show = (answer: unknown, table: () => string[]) => (values.json ? io.print(JSON.stringify(answer, null, 2)) : table().forEach((line) => io.print(line)));
    switch (command) {
      case "send": {
        const [name] = positionals;
        if (!name) throw new CommandError("stepwise send needs an event name: stepwise send user/signup --data '{\"id\":1}'", EXIT.usage);
        const answer = (await api.call("POST", "/api/events", process.env.STEPWISE_EVENT_KEY, { name, data: parseData(values.data), ...(values.id && { id: values.id }) })) as { ids: string[] };
        show(answer, () => [`sent ${name}: event ${answer.ids[0]}`]);
        return EXIT.ok;
      }
      case "signal": {
        const [signal] = positionals;
        if (!signal) throw new CommandError("stepwise signal needs the signal a run waits for: stepwise signal approval/order-42 --data '{\"ok\":true}'", EXIT.usage);
        const body = { signal, ...(values.data !== undefined && { data: parseData(values.data) }), ...(values.id && { id: values.id }) };
        const answer = (await api.call("POST", "/api/signals", process.env.STEPWISE_EVENT_KEY, body, EXIT.notFound)) as SignalSent;
        show(answer, () => [answer.duplicate ? `signal ${signal}: ${answer.id} was delivered before; nothing happened now` : `signal ${signal}: resumed run ${answer.runId} at step ${answer.stepId}`]);
        return EXIT.ok;
      }
      case "runs": {
        const query = new URLSearchParams();
        for (const key of ["function", "status", "since", "until", "q", "limit", "cursor"] as const) if (values[key] !== undefined) query.set(key, values[key]);
        const page = (await api.call("GET", `/api/runs${query.size > 0 ? `?${query}` : ""}`, process.env.STEPWISE_API_KEY)) as RunPage;
        show(page, () => runsTable(page, query, values.url));
        return EXIT.ok;
      }
      case "cancel":
      case "replay": {
        const [runId] = positionals;
        const filter = new URLSearchParams();
        for (const key of ["function", "status", "since", "until", "q"] as const) if (values[key] !== undefined) filter.set(key, values[key]);
        if (runId && filter.size > 0) throw new CommandError(`give a run ID or a filter (--function, --status, --since, --until, --q), not both`, EXIT.usage);
        if (!runId && filter.size === 0) throw new CommandError(`stepwise ${command} needs a run ID (stepwise runs lists them) or a filter: --function, --status, --since, --until, --q`, EXIT.usage);
        if (!runId) return await bulk(api, command, filter, { pageSize: values.limit, cursor: values.cursor }, values.json, io);
        if (values.limit !== undefined || values.cursor !== undefined) throw new CommandError(`--limit and --cursor go with a filter, not a run ID`, EXIT.usage);
        const run = (await api.call("POST", `/api/runs/${encodeURIComponent(runId)}/${command}`, process.env.STEPWISE_API_KEY, undefined, EXIT.notFound)) as RunView;
        const note = command === "cancel" ? (run.status !== "cancelled" ? [`(it had ended already, ${run.status}: nothing to cancel)`] : []) : [`(replays run ${runId})`];
        show(run, () => [...runLines(run), ...note]);
        return EXIT.ok;
      }
      case "rerun": {
        const [runId] = positionals;
        if (!runId || !values.from) throw new CommandError("stepwise rerun needs a run ID and the step to run again from: stepwise rerun <run id> --from <step id> [--output '<json>']", EXIT.usage);
        const body = { fromStep: values.from, ...(values.output !== undefined && { output: parseJsonFlag("output", values.output) }) };
        const run = (await api.call("POST", `/api/runs/${encodeURIComponent(runId)}/rerun`, process.env.STEPWISE_API_KEY, body, EXIT.notFound)) as RunView;
        show(run, () => [...runLines(run), `(reruns run ${runId} from step "${values.from}")`]);
        return EXIT.ok;
      }
      case "run": {
        const [runId] = positionals;
        if (!runId) throw new CommandError("stepwise run needs a run ID (stepwise runs lists them)", EXIT.usage);
        const run = (await api.call("GET", `/api/runs/${encodeURIComponent(runId)}`, process.env.STEPWISE_API_KEY, undefined, EXIT.notFound)) as RunView;
        show(run, () => runLines(run));
        return EXIT.ok;
      }
    }
  } catch (error) {
    if (error instanceof CommandError) {
      io.fail(`stepwise ${command}: ${error.message}`);
      return error.code;
    }
    // parseArgs's own errors: an unknown option, a value missing.
    io.fail(`stepwise ${command}: ${error instanceof Error ? error.message : String(error)}`);
    return error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS") ? EXIT.usage : EXIT.failed;
  }
}

function parseData(data: string | undefined): unknown {
  return data === undefined ? {} : parseJsonFlag("data", data);
}

function parseJsonFlag(name: string, value: string): unknown {
  try {
    return JSON.parse(value);
  } catch (error) {
    throw new CommandError(`--${name} is not JSON (${error instanceof Error ? error.message : String(error)}): quote it, e.g. --${name} '{"id":1}'`, EXIT.usage);
  }
}

/**
 * A bulk cancel or replay: page after page until the executor says nothing is left, a line of
 * progress after each (on stderr with --json, whose stdout is the totals alone).
 */
async function bulk(
  api: ExecutorApi,
  action: "cancel" | "replay",
  filter: URLSearchParams,
  pages: { pageSize?: string; cursor?: string },
  json: boolean,
  io: { print: (line: string) => void; fail: (line: string) => void },
): Promise<number> {
  const totals = { matched: 0, done: 0, passed: [] as Array<{ runId: string; reason: string }>, replayed: [] as Array<{ runId: string; replayOf: string }> };
  const progress = json ? io.fail : io.print;
  const verb = action === "cancel" ? "cancelled" : "replayed";
  let cursor: string | null = pages.cursor ?? null;
  do {
    const query = new URLSearchParams(filter);
    if (pages.pageSize !== undefined) query.set("limit", pages.pageSize);
    if (cursor) query.set("cursor", cursor);
    let page: BulkCancelResult | BulkReplayResult;
    try {
      page = (await api.call("POST", `/api/runs/${action}?${query}`, process.env.STEPWISE_API_KEY)) as BulkCancelResult | BulkReplayResult;
    } catch (error) {
      // Where to go on from: a page that failed may have been done in part, so it is named too.
      if (totals.matched > 0 || cursor) progress(`stopped after ${verb} ${totals.done} run(s); to go on from the page that failed, add ${shellFlag("cursor", cursor ?? "")}${cursor ? "" : " (none: it was the first)"}`);
      throw error;
    }
    totals.matched += page.matched;
    if ("cancelled" in page) totals.done += page.cancelled;
    else {
      totals.done += page.replayed.length;
      totals.replayed.push(...page.replayed);
    }
    totals.passed.push(...page.passed);
    cursor = page.next;
    progress(`${verb} ${totals.done} of ${totals.matched} run(s) so far${cursor ? "…" : ""}`);
  } while (cursor);
  for (const { runId, reason } of totals.passed) progress(`  not ${verb}: ${runId}: ${reason}`);
  if (json) io.print(JSON.stringify({ matched: totals.matched, ...(action === "cancel" ? { cancelled: totals.done } : { replayed: totals.replayed }), passed: totals.passed }, null, 2));
  else io.print(`done: ${verb} ${totals.done} run(s)${totals.passed.length > 0 ? `, ${totals.passed.length} left as they were` : ""}`);
  return EXIT.ok;
}

/** The executor's API, its errors turned into messages and exit codes. */
class ExecutorApi {
  private readonly base: string;

  constructor(base: string) {
    let url: URL | undefined;
    try {
      url = new URL(base);
    } catch {
      url = undefined;
    }
    if (!url || !/^https?:$/.test(url.protocol)) throw new CommandError(`--url "${base}" is not an http(s) URL: give it whole, e.g. http://127.0.0.1:8288`, EXIT.usage);
    // Joined as text, so an executor behind a path prefix (https://host/stepwise) keeps it.
    this.base = base.replace(/\/+$/, "");
  }

  /** `notFound`: the exit code of a 404 (a run that does not exist; a missing route is a failure). */
  async call(method: string, path: string, key: string | undefined, body?: unknown, notFound: number = EXIT.failed): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(`${this.base}${path}`, {
        method,
        headers: { ...(key && { authorization: `Bearer ${key}` }), ...(body !== undefined && { "content-type": "application/json" }) },
        ...(body !== undefined && { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (error) {
      const cause = error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : "";
      throw new CommandError(`could not reach the executor at ${this.base}${cause}: is it running? (--url or STEPWISE_BASE_URL)`, EXIT.failed);
    }
    const text = await response.text();
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      throw new CommandError(`the executor at ${this.base} answered ${response.status} with something not JSON: ${text.slice(0, 120)}`, EXIT.failed);
    }
    if (response.ok) return answer;
    const message = (answer as { error?: unknown }).error;
    const why = typeof message === "string" ? message : `HTTP ${response.status}`;
    throw new CommandError(why, response.status === 404 ? notFound : response.status === 400 ? EXIT.usage : EXIT.failed);
  }
}

/** Columns padded to their widest cell. */
function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd());
}

function duration(from: string, to: string | undefined): string {
  return to ? formatDuration(new Date(to).getTime() - new Date(from).getTime()) : "-";
}

/** A flag as a shell reads it back: `--name=value`, the value quoted when it holds anything a shell would split or expand. */
function shellFlag(name: string, value: string): string {
  return /^[\w.:,@%+=\/-]+$/.test(value) ? `--${name}=${value}` : `--${name}='${value.replace(/'/g, `'\\''`)}'`;
}

function runsTable(page: RunPage, query: URLSearchParams, url: string | undefined): string[] {
  // With --q a page can be empty before the list ends (the executor looks at so many runs a request): the cursor goes on.
  if (page.runs.length === 0 && !page.next) return ["no runs"];
  const rows = [["RUN", "FUNCTION", "STATUS", "STARTED", "TOOK"], ...page.runs.map((run: RunSummary) => [run.id, run.functionId, run.status, run.startedAt, duration(run.startedAt, run.endedAt)])];
  const lines = page.runs.length === 0 ? ["no match among the runs looked at so far"] : table(rows);
  if (page.next) {
    query.set("cursor", page.next);
    const flags = [...(url ? [["url", url]] : []), ...query].map(([key, value]) => shellFlag(key!, value!)).join(" ");
    lines.push("", `more: stepwise runs ${flags}`);
  }
  return lines;
}

/** A run and its steps as a timeline: when each started after the run, how long it took. */
function runLines(run: RunView): string[] {
  const lines = [`run ${run.id}  ${run.functionId}  ${run.status}  started ${run.startedAt}  took ${duration(run.startedAt, run.endedAt)}`];
  if (run.paused) lines.push(`paused since ${run.paused.at} by ${run.paused.by === "operator" ? "an operator" : "its function's pause"}: nothing moves it until it is resumed`);
  if (run.replayOf) lines.push(run.rerunFrom ? `rerun of run ${run.replayOf} from step "${run.rerunFrom}"` : `replay of run ${run.replayOf}`);
  if (run.appVersion) lines.push(`started on version ${run.appVersion} of its app`);
  if (run.error) lines.push(`error: ${run.error.name}: ${run.error.message}`);
  if (run.status === "completed") lines.push(`output: ${JSON.stringify(run.output)}`);
  if (run.steps.length === 0) return lines;
  const at = (time: string) => `+${duration(run.startedAt, time)}`;
  const rows = [["STEP", "KIND", "STATUS", "TRIES", "AT", "TOOK"], ...run.steps.map((step) => [step.name, step.kind, step.status, String(step.attempts), at(step.startedAt), duration(step.startedAt, step.endedAt)])];
  lines.push("", ...table(rows));
  for (const step of run.steps) if (step.error) lines.push(`  ${step.name}: ${step.error.name}: ${step.error.message}`);
  return lines;
}
