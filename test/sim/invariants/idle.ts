/**
 * The executors idle when nothing is due, and stop within their grace period.
 */
import { STOP_GRACE_MS } from "../world.ts";
import type { Scene } from "./scene.ts";

/** How long a stop gives jobs still running back after the grace, at most (`Lanes.stop`). */
const STOP_GIVE_BACK_MS = 1_000;
/** What a busy machine may add to a stop's own bound. */
const EVENT_LOOP_SLACK_MS = 1_000;
/** The idle process may use at most this many times the reference poller's CPU. */
const IDLE_CPU_RATIO = 20;
const pct = (share: number) => `${(share * 100).toFixed(0)}%`;

export async function checkIdle(scene: Scene): Promise<void> {
  const { sql, played, fail } = scene;
  // 10. Idle and stopping.
  // A poll every 200 ms is about 8 claims in 1.5 s. A few more are Redis entries of jobs already
  // gone from the record (a forget cut short by a crash), each dropped at its first claim; a
  // loop would make hundreds. (This check found the tx path not telling Redis of its own job.)
  const perExecutor = played.idleClaims / 2;
  if (perExecutor > 16) {
    const [jobs] = await sql.query<{ n: number | string }>("SELECT count(*) AS n FROM jobs");
    fail(`the executors claimed ${played.idleClaims} times in 1.5 s with nothing due (a poll every 200 ms is 8); ${played.idleFruitfulClaims} claims found a job; the record holds ${jobs?.n} jobs`);
  }
  // Two executors, the app, the test runner and (by topology) PGlite or the Redis bridge share
  // this process: 2-11 times the reference poller over 1.5 s on a quiet machine; a spinning loop
  // is fifty times and more.
  if (played.idleCpu > IDLE_CPU_RATIO * played.idleReferenceCpu) {
    fail(`the process used ${pct(played.idleCpu)} of a core with nothing due, ${(played.idleCpu / played.idleReferenceCpu).toFixed(1)} times the reference poller's ${pct(played.idleReferenceCpu)} (at most ${IDLE_CPU_RATIO})`);
  }
  // A stop waits out the grace, then gives back what still runs within a second; beyond that
  // only a busy event loop delays it. In npm test the three topologies' slices share two cores:
  // a stop whose give-back ran out its second (a stalled store) was seen at grace + 1.15 s.
  for (const ms of played.stops) if (ms > STOP_GRACE_MS + STOP_GIVE_BACK_MS + EVENT_LOOP_SLACK_MS) fail(`a graceful stop took ${ms} ms (grace ${STOP_GRACE_MS} ms)`);
}
