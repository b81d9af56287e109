// The last part of `npm test`: the system suites (the `stepwise` command under bursts, the
// simulation, the browser) and the chaos suites (executor processes killed, services restarted)
// side by side. Each runs its files one at a time; together they keep both cores busy where
// one after the other left one idle (chaos mostly waits: for kills, restarts and leases). Each
// project's output is printed whole when it ends, so the two logs do not interleave.
import { spawn } from "node:child_process";

const projects = ["system", "chaos"];
const vitest = "node_modules/.bin/vitest";

const results = await Promise.all(
  projects.map(
    (project) =>
      new Promise((resolve) => {
        const started = Date.now();
        const child = spawn(process.execPath, [vitest, "run", "--project", project], { stdio: ["ignore", "pipe", "pipe"], env: process.env });
        const output = [];
        child.stdout.on("data", (chunk) => output.push(chunk));
        child.stderr.on("data", (chunk) => output.push(chunk));
        console.log(`== vitest --project ${project}: started`);
        child.on("close", (code, signal) => {
          process.stdout.write(Buffer.concat(output));
          const seconds = Math.round((Date.now() - started) / 1000);
          console.log(`== vitest --project ${project}: ${code === 0 ? "passed" : `failed (${signal ?? `exit ${code}`})`} in ${seconds} s`);
          resolve(code ?? 1);
        });
      }),
  ),
);
process.exit(results.some((code) => code !== 0) ? 1 : 0);
