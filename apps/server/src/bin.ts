#!/usr/bin/env node
// The `stepwise` command as installed: compiled JavaScript, run by plain Node. In this repository
// bin/stepwise.mjs runs the same module from its TypeScript source.
import { main } from "./cli.ts";

try {
  await main(process.argv.slice(2));
} catch (error) {
  console.error(`stepwise: ${error instanceof Error ? error.message : String(error)}`);
  if (process.env.STEPWISE_DEBUG) console.error(error);
  process.exit(1);
}
