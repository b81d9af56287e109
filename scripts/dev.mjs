// `npm run dev`: the dev server (embedded store) and the example app, side by side, in dev mode.
// Each process's lines are prefixed with its name; Ctrl-C stops both.
import { spawn } from "node:child_process";

const env = { ...process.env, STEPWISE_DEV: "1" };
const appUrl = "http://127.0.0.1:3000/api/durable";
const processes = [
  ["stepwise", ["apps/server/bin/stepwise.mjs", "dev", "--app", appUrl]],
  ["example ", ["node_modules/.bin/tsx", "apps/examples/node-hono/src/main.ts"]],
].map(([name, args]) => {
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  for (const stream of [child.stdout, child.stderr]) {
    let buffered = "";
    stream.on("data", (chunk) => {
      buffered += chunk;
      const lines = buffered.split("\n");
      buffered = lines.pop();
      for (const line of lines) console.log(`${name} | ${line}`);
    });
  }
  child.on("exit", (code, signal) => {
    console.log(`${name} | exited (${signal ?? code})`);
    stopAll();
  });
  return child;
});

let stopping = false;
function stopAll() {
  if (stopping) return;
  stopping = true;
  for (const child of processes) if (child.exitCode === null) child.kill("SIGTERM");
  setTimeout(() => process.exit(0), 3_000).unref();
}
process.on("SIGINT", stopAll);
process.on("SIGTERM", stopAll);
