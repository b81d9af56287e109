#!/usr/bin/env node
// The `stepwise` command inside this repository: the executor's TypeScript source run through tsx,
// so a change needs no build. The published package runs the compiled src/bin.ts instead.
import { register } from "tsx/esm/api";

register();
await import("../src/bin.ts");
