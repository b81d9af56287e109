/** One readable line per meaningful thing; the server decides where lines go. */
export interface Logger {
  info(line: string): void;
  warn(line: string): void;
  error(line: string): void;
}

/** Lines to the console with a time prefix (portable; the Node server uses a batched one). */
export const consoleLogger: Logger = {
  info: (line) => console.log(`${time()} ${printable(line)}`),
  warn: (line) => console.warn(`${time()} WARN ${printable(line)}`),
  error: (line) => console.error(`${time()} ERROR ${printable(line)}`),
};

// C0 and C1 controls but tab, the line and paragraph separators, and the bidirectional controls (which reorder what a terminal shows).
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * A line as a sink prints it: control characters shown as escapes (`\n`, `\u001b`). Lines
 * carry what senders chose (event names, IDs, paths, error messages), and a newline in one
 * must not forge a line of its own, nor an escape sequence drive the operator's terminal.
 */
export function printable(line: string): string {
  return line.replace(CONTROL, (c) => (c === "\n" ? "\\n" : c === "\r" ? "\\r" : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`));
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

/** `12:34:56.789`: the prefix of every line. */
export function time(): string {
  return new Date().toISOString().slice(11, 23);
}

/** "1.2s", "15ms", "3m 2s": durations in log lines. */
export function formatDuration(ms: number): string {
  // Times stamped by executors whose clocks disagree can come out negative: show them as 0.
  if (ms < 1_000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  // Whole seconds first: 119.6 s is "2m 0s", not "1m 60s".
  const seconds = Math.round(ms / 1_000);
  return `${Math.floor(seconds / 60)}m ${seconds % 60}s`;
}

/** `run 01HX… fulfil`: how every run line starts, so a run's story greps as one. */
export function runLabel(runId: string, functionId: string): string {
  return `run ${runId} ${functionId}`;
}
