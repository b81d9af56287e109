/**
 * The baseline for idle-CPU checks. A check like "the idle executor uses under 5% of a core"
 * passes on a quiet machine and fails on a busy shared one, where every instruction costs more
 * (CI saw the same idle executor at 1.5% and at 11%). So an idle check measures, in the same
 * window, a reference process that does what a well-behaved idle poller does: wake every 200 ms
 * and do a small fixed job (serialise, parse and sign a few KB of JSON). A slow machine slows
 * both alike, so the ratio holds on a quiet machine and a noisy one; a loop that spins, or polls
 * fifty times too often, is still far above it.
 */
import { spawn, type ChildProcess } from "node:child_process";

/** The reference poller's source. It answers each message with the CPU time it has used. */
const referencePoller = (jobsPerTick: number) => `
import { createHmac } from "node:crypto";
const document = { items: Array.from({ length: 40 }, (_, n) => ({ id: "job-" + n, due: n * 1000, data: { attempt: n % 3, note: "x".repeat(40) } })) };
const poll = () => {
  for (let n = 0; n < ${jobsPerTick}; n++) {
    const text = JSON.stringify(document);
    createHmac("sha256", "key").update(text).digest("hex");
    JSON.parse(text);
  }
};
setInterval(poll, 200);
process.on("message", () => {
  const { user, system } = process.cpuUsage();
  process.send((user + system) / 1e6);
});
`;

/**
 * How much the reference poller does per wake-up. Chosen so that on a quiet machine it uses about
 * as much CPU as an idle `stepwise` executor (1-2% of a core), which keeps the ratio near 1 there.
 */
const JOBS_PER_TICK = 40;

export class IdleBaseline {
  private constructor(private readonly child: ChildProcess) {}

  /** Starts the reference poller and lets it settle past its start-up. */
  static async start(): Promise<IdleBaseline> {
    const child = spawn(process.execPath, ["--input-type=module", "-e", referencePoller(JOBS_PER_TICK)], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const baseline = new IdleBaseline(child);
    await baseline.cpuSeconds();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    return baseline;
  }

  /** Starts a window; the function it returns ends it and gives the share of a core the poller used. */
  async window(): Promise<() => Promise<number>> {
    const before = await this.cpuSeconds();
    const from = performance.now();
    return async () => {
      const used = (await this.cpuSeconds()) - before;
      return used / ((performance.now() - from) / 1_000);
    };
  }

  stop(): void {
    this.child.kill();
  }

  private cpuSeconds(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.child.once("message", (seconds) => resolve(seconds as number));
      this.child.once("error", reject);
      this.child.send("cpu");
    });
  }
}
