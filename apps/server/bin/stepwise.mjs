#!/usr/bin/env node
// The `stepwise` command. The executor is TypeScript run through tsx, so there is no build step.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli.ts");
try {
  await main(process.argv.slice(2));
} catch (error) {
  console.error(`stepwise: ${error instanceof Error ? error.message : String(error)}`);
  if (process.env.STEPWISE_DEBUG) console.error(error);
  process.exit(1);
}
