/**
 * The `logger` of a handler. A function body runs again on every invocation, so its lines
 * are held back and printed only when the function finishes (returned or threw); lines
 * written while a step's code actually runs go out at once. Everything else is dropped, so
 * each line shows up once per real execution instead of once per replay.
 */
import type { Logger } from "./types.ts";

type Level = keyof Logger;

/** A logger bound to one invocation of one run. */
export class RunLogger implements Logger {
  private mode: "held" | "live" | "off" = "held";
  private held: Array<{ level: Level; args: unknown[] }> = [];

  constructor(
    private readonly sink: Logger,
    private readonly runId: string,
  ) {}

  // Arrow properties so `const { info } = logger` keeps working.
  readonly debug = (...args: unknown[]): void => this.write("debug", args);
  readonly info = (...args: unknown[]): void => this.write("info", args);
  readonly warn = (...args: unknown[]): void => this.write("warn", args);
  readonly error = (...args: unknown[]): void => this.write("error", args);

  /** From now on, print at once (a step's code is running). */
  goLive(): void {
    this.mode = "live";
  }

  /** The function finished: print what the body logged, then stop. */
  flush(): void {
    for (const { level, args } of this.held) this.emit(level, args);
    this.close();
  }

  /** The invocation is answered: drop what is held and ignore later calls. */
  close(): void {
    this.held = [];
    this.mode = "off";
  }

  private write(level: Level, args: unknown[]): void {
    if (this.mode === "live") this.emit(level, args);
    else if (this.mode === "held") this.held.push({ level, args });
  }

  private emit(level: Level, args: unknown[]): void {
    this.sink[level](`[${this.runId}]`, ...args);
  }
}
