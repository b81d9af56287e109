/**
 * 21. A run that started on the app's first version is invoked at another deployment only after
 *     that version's deployment was deleted: the faulty network's refused connections, now and
 *     then between answers, never move runs to code they did not start on.
 */
import { FIRST_DEPLOYMENT_HOST, FIRST_VERSION } from "../world.ts";
import { localId, type Scene } from "./scene.ts";

export function checkDeploys(scene: Scene): void {
  const { ledger, runs, fail } = scene;
  const deletedAt = ledger.firstDeploymentDeletedAt;
  const reported = new Set<string>();
  for (const invocation of ledger.invocations) {
    const run = runs.get(invocation.runId);
    if (!run || run.app_version !== FIRST_VERSION || invocation.host === FIRST_DEPLOYMENT_HOST) continue;
    if ((deletedAt !== undefined && invocation.sentAt >= deletedAt) || reported.has(invocation.runId)) continue;
    reported.add(invocation.runId);
    const when = deletedAt === undefined ? "though that deployment was never deleted" : `${deletedAt - invocation.sentAt} ms before that deployment was deleted`;
    fail(`run ${invocation.runId} (${localId(run)}) started on version ${FIRST_VERSION}, yet invocation ${invocation.id} (${invocation.executor}) went to ${invocation.host} ${when}`);
  }
}
