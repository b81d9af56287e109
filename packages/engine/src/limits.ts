/** Size and count limits, each configurable on the executor. */
export interface Limits {
  /** Largest event payload (the JSON of one event). */
  maxEventBytes: number;
  /** Largest JSON output of one step. */
  maxStepOutputBytes: number;
  /** Most steps one run may reach. */
  maxStepsPerRun: number;
  /** Largest answer accepted from an app (outputs and ops of one invocation). */
  maxResponseBytes: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxEventBytes: 512 * 1024,
  maxStepOutputBytes: 4 * 1024 * 1024,
  maxStepsPerRun: 1_000,
  maxResponseBytes: 16 * 1024 * 1024,
};

/** Byte length of a value as JSON (UTF-8). */
export function jsonBytes(value: unknown): number {
  const text = JSON.stringify(value ?? null);
  return new TextEncoder().encode(text).byteLength;
}

/** "4 MB", "512 KB": limits as people read them. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${+(bytes / 1024 / 1024).toFixed(1)} MB`;
  if (bytes >= 1024) return `${+(bytes / 1024).toFixed(1)} KB`;
  return `${bytes} B`;
}
