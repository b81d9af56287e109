// The last part of `npm test`, in two lanes side by side: the system suites (the `stepwise`
// command under bursts, pages in a browser) then the simulation slice; and the chaos suites
// (executor processes killed, services restarted) then the command suites (`stepwise` and
// `wrangler dev` as processes). Each project runs its files one at a time; one lane after
// another left a core idle (chaos mostly waits: for kills, restarts and leases). The second lane
// is the shorter, so the simulation, whose promises include how long a stop takes, runs alone
// (beside the system bursts, a graceful stop overran its bound by 0.3 s). A project's output is
// printed whole when it ends, so logs do not interleave; npm test fails if any project does.
import { spawn } from "node:child_process";

const lanes = [["system", "sim"], ["chaos", "commands"]];
const vitest = "node_modules/.bin/vitest";

/** Runs one project; resolves its exit code once its output is printed. */
function run(project) {
  return new Promise((resolve) => {
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
  });
}

const codes = await Promise.all(
  lanes.map(async (lane) => {
    const results = [];
    for (const project of lane) results.push(await run(project));
    return results;
  }),
);
process.exit(codes.flat().some((code) => code !== 0) ? 1 : 0);
