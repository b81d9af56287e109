#!/usr/bin/env node
// The `stepwise` command as installed: compiled JavaScript, run by plain Node. In this repository
// bin/stepwise.mjs runs the same module from its TypeScript source.
import { main } from "./cli.ts";

try {
  await main(process.argv.slice(2));
} catch (error) {
  console.error(`stepwise: ${describe(error)}`);
  if (process.env.STEPWISE_DEBUG) console.error(error);
  process.exit(1);
}

/** What failed, in words: some drivers reject with events or plain objects rather than Errors. */
function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  const message = (error as { message?: unknown; error?: { message?: unknown } } | null)?.message ?? (error as { error?: { message?: unknown } } | null)?.error?.message;
  if (typeof message === "string" && message) return message;
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}
