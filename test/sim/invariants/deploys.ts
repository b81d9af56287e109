/**
 * 21. A run is invoked only at the deployment of the version it started on (`<version>.sim.app`),
 *     and elsewhere only after that deployment was deleted (the first version's may be): the
 *     faulty network's refused connections, now and then between answers, never move runs to
 *     code they did not start on.
 */
import { FIRST_VERSION } from "../world.ts";
import { localId, type Scene } from "./scene.ts";

export function checkDeploys(scene: Scene): void {
  const { ledger, runs, fail } = scene;
  const deletedAt = ledger.firstDeploymentDeletedAt;
  const reported = new Set<string>();
  for (const invocation of ledger.invocations) {
    const run = runs.get(invocation.runId);
    const version = run?.app_version;
    if (!run || typeof version !== "string" || invocation.host === `${version}.sim.app` || reported.has(invocation.runId)) continue;
    const deleted = version === FIRST_VERSION ? deletedAt : undefined;
    if (deleted !== undefined && invocation.sentAt >= deleted) continue;
    reported.add(invocation.runId);
    const when = deleted === undefined ? "though that deployment was never deleted" : `${deleted - invocation.sentAt} ms before that deployment was deleted`;
    fail(`run ${invocation.runId} (${localId(run)}) started on version ${version}, yet invocation ${invocation.id} (${invocation.executor}) went to ${invocation.host} ${when}`);
  }
}
