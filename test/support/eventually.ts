/**
 * Polls `attempt` until it returns a value (not undefined, not a throw) and returns it; after
 * `timeoutMs` throws saying what did not happen, with `context()` (the logs to read) appended.
 */
export async function eventually<T>(what: string, attempt: () => Promise<T | undefined>, options: { timeoutMs?: number; context?: () => string } = {}): Promise<T> {
  const { timeoutMs = 20_000, context } = options;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await attempt().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what} did not happen within ${timeoutMs} ms${context ? `\n${context()}` : ""}`);
}
