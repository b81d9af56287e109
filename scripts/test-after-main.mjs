// The part of `npm test` after the main project, in two lanes side by side, then the
// simulation slice alone. Lane one: the system suites (the `stepwise` command under bursts,
// pages in a browser), bound by CPU. Lane two: the typecheck, then the chaos suites (executor
// processes killed, services restarted) and the command suites (`stepwise` and `wrangler dev`
// as processes), which mostly wait. One lane after the other left a core idle. The simulation's
// promises include how long a stop takes and how little an idle executor works, so it runs
// once both lanes are done (beside the system bursts, a graceful stop overran its bound by
// 0.3 s). A step's output is printed whole when it ends, so logs do not interleave; npm test
// fails if any step does.
import { spawn } from "node:child_process";

const vitest = (project) => ({ name: `vitest --project ${project}`, args: ["node_modules/.bin/vitest", "run", "--project", project] });
const typecheck = { name: "typecheck", args: ["node_modules/.bin/tsc", "-p", "tsconfig.json", "--noEmit"] };

/** Each phase's lanes run side by side; a lane's steps one after another; phases in turn. */
const phases = [
  [[vitest("system")], [typecheck, vitest("chaos"), vitest("commands")]],
  [[vitest("sim")]],
];

/** Runs one step; resolves its exit code once its output is printed. */
function run({ name, args }) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: process.env });
    const output = [];
    child.stdout.on("data", (chunk) => output.push(chunk));
    child.stderr.on("data", (chunk) => output.push(chunk));
    console.log(`== ${name}: started`);
    child.on("close", (code, signal) => {
      process.stdout.write(Buffer.concat(output));
      const seconds = Math.round((Date.now() - started) / 1000);
      console.log(`== ${name}: ${code === 0 ? "passed" : `failed (${signal ?? `exit ${code}`})`} in ${seconds} s`);
      resolve(code ?? 1);
    });
  });
}

const codes = [];
for (const lanes of phases) {
  const results = await Promise.all(
    lanes.map(async (steps) => {
      const lane = [];
      for (const step of steps) lane.push(await run(step));
      return lane;
    }),
  );
  codes.push(...results.flat());
}
process.exit(codes.some((code) => code !== 0) ? 1 : 0);
