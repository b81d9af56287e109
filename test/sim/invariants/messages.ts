/**
 * Live messages (19): what a run published is stored in order, numbered from 1 without gaps, and
 * each once; every message names an execution of a step body of its run (the bodies publish
 * their token from inside), so neither a replay nor a retried request sends one twice.
 */
import { IN, json, type Scene } from "./scene.ts";

export async function checkMessages(scene: Scene): Promise<number> {
  const { sql, runIds, bodiesByStep, fail } = scene;
  const rows = await sql.query<{ run_id: string; seq: number | string; topic: string; data: string }>(
    "SELECT run_id, seq, topic, data FROM run_messages WHERE run_id IN " + IN("$1") + " ORDER BY run_id, seq",
    [runIds],
  );
  const byRun = new Map<string, typeof rows>();
  for (const row of rows) byRun.set(row.run_id, [...(byRun.get(row.run_id) ?? []), row]);
  for (const [runId, messages] of byRun) {
    const seqs = messages.map((m) => Number(m.seq));
    if (seqs.some((seq, i) => seq !== i + 1)) fail(`run ${runId}: its messages are numbered ${JSON.stringify(seqs.slice(0, 20))}, not 1, 2, 3, …`);
    const seen = new Set<string>();
    for (const message of messages) {
      const { stepId, token } = (json(message.data) ?? {}) as { stepId?: string; token?: string };
      const bodies = bodiesByStep.get(`${runId}\n${stepId}`) ?? [];
      if (!bodies.some((body) => body.issued === token)) fail(`run ${runId}: message ${message.seq} names ${stepId}'s execution ${token}, which never ran`);
      if (token && seen.has(token)) fail(`run ${runId} step ${stepId}: the message of execution ${token} was stored twice`);
      if (token) seen.add(token);
    }
  }
  return rows.length;
}
