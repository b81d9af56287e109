/**
 * Where a process spent its CPU, from a V8 CPU profile: self time by part (each Stepwise
 * package, each npm dependency, Node's own modules, garbage collection, idle) and the functions
 * that cost most. The profiles come from the bench:
 *
 *   STEPWISE_BENCH_PROFILE=/tmp/prof npx tsx bench/run.ts --soak-seconds 0 --only postgres-tcp
 *   npx tsx bench/profile-summary.ts /tmp/prof/*.cpuprofile
 *
 * (one profile per executor process, written when it exits, and one of the bench's app).
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The part of the program a frame belongs to, named for a reader. */
export function partOf(frame: ProfileNode["callFrame"]): string {
  const { url, functionName } = frame;
  if (!url) return functionName.startsWith("(") ? functionName : "(native)";
  if (url.startsWith("node:")) return `node:${url.slice(5).split("/")[0]}`;
  const pkg = /\/packages\/([^/]+)\//.exec(url) ?? /\/apps\/([^/]+)\//.exec(url);
  const dep = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (dep && !url.includes("/node_modules/@stepwise/")) return dep[1]!;
  if (pkg) return `stepwise ${pkg[1]}`;
  return basename(url);
}

/** Self time in ms per part and per function, and the total sampled. */
export function summarize(profile: Profile): { totalMs: number; parts: Map<string, number>; functions: Map<string, number> } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parts = new Map<string, number>();
  const functions = new Map<string, number>();
  let totalMs = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    const frame = byId.get(id)?.callFrame;
    if (!frame) return;
    totalMs += ms;
    const part = partOf(frame);
    parts.set(part, (parts.get(part) ?? 0) + ms);
    const name = `${frame.functionName || "(anonymous)"} ${part}${frame.url ? `:${frame.lineNumber + 1}` : ""}`;
    functions.set(name, (functions.get(name) ?? 0) + ms);
  });
  return { totalMs, parts, functions };
}

/** The `n` costliest entries but idle time, each in ms and as a share of the time not idle. */
function top(map: Map<string, number>, n: number, busyMs: number): string[] {
  return [...map]
    .filter(([name]) => !name.startsWith("(idle)"))
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, ms]) => `  ${ms.toFixed(0).padStart(7)} ms  ${((100 * ms) / busyMs).toFixed(1).padStart(5)}%  ${name}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: npx tsx bench/profile-summary.ts <file.cpuprofile>...");
    process.exit(2);
  }
  for (const file of files) {
    const { totalMs, parts, functions } = summarize(JSON.parse(readFileSync(file, "utf8")) as Profile);
    const busyMs = totalMs - (parts.get("(idle)") ?? 0);
    console.log(`${basename(file)}: ${(totalMs / 1000).toFixed(1)} s sampled, ${(busyMs / 1000).toFixed(1)} s not idle`);
    console.log(" by part (self time, share of the time not idle):");
    for (const line of top(parts, 15, busyMs)) console.log(line);
    console.log(" costliest functions:");
    for (const line of top(functions, 15, busyMs)) console.log(line);
  }
}
