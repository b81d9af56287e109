import { silentLogger } from "@stepwise/engine";
import { createNeonClient, createPgClient, PostgresStore } from "@stepwise/store-postgres";
import { startServer } from "@stepwise/server";
import { startWsTcpBridge } from "@stepwise/dev-bridges";
import { SIGNING_KEY } from "./app.ts";
import { Recorder, startAppProcess } from "./recorder.ts";

const probe = new Recorder();
const { url: appUrl, child } = await startAppProcess(probe);
const bridge = await startWsTcpBridge();
const admin = createNeonClient({ connectionString: "postgres://postgres@127.0.0.1:5432/test", wsProxy: bridge.wsProxy, max: 1 });
const db = `scratch_${Date.now()}`; await admin.query(`CREATE DATABASE ${db}`);
const raw = process.env.USE_PG ? createPgClient({ connectionString: `postgres://postgres@127.0.0.1:5432/${db}` }) : createNeonClient({ connectionString: `postgres://postgres@127.0.0.1:5432/${db}`, wsProxy: bridge.wsProxy });
const Q: Record<string, number[]> = {};
const timed = (ex: any) => ({ query: async (text: string, params?: any) => { const t = performance.now(); try { return await ex.query(text, params); } finally { (Q[text.replace(/\s+/g, " ").slice(0, 60)] ??= []).push(performance.now() - t); } } });
const wrapped: any = { ...timed(raw), exec: (s: string) => raw.exec(s), close: () => raw.close(), transaction: async (fn: any) => { const t = performance.now(); try { return await raw.transaction((tx: any) => fn(timed(tx))); } finally { (Q["<tx>"] ??= []).push(performance.now() - t); } } };
import { RedisQueue } from "@stepwise/queue-redis";
import { startUpstashBridge } from "@stepwise/dev-bridges";
const up = process.env.USE_REDIS ? await startUpstashBridge({ port: 0, token: "t" }) : null;
const store = new PostgresStore(wrapped, up ? { queue: new RedisQueue({ url: up.url, token: "t", prefix: `scratch${Date.now()}:` }) } : {});
const server = await startServer({ store, dev: true, port: 0, appUrls: [appUrl], signingKey: SIGNING_KEY, log: silentLogger });
await server.appsSynced;
for (const steps of [20, 100]) {
  probe.stepTimes.clear();
  const done = probe.finishedAfter(1);
  await fetch(`${server.url}/api/events`, { method: "POST", body: JSON.stringify({ name: "bench/sequence", data: { steps } }) });
  await done;
  const [t] = [...probe.stepTimes.values()];
  console.log(steps, "per step ms", ((t!.at(-1)! - t![0]!) / (steps - 1)).toFixed(2));
}
const T = (globalThis as any).__t as [string, number][] | undefined;
if (T) { const gaps: Record<string, number[]> = {};
for (let i = 1; i < T.length; i++) { const k = `${T[i-1]![0]}->${T[i]![0]}`; (gaps[k] ??= []).push(T[i]![1] - T[i-1]![1]); }
for (const [k, v] of Object.entries(gaps)) { v.sort((a, b) => a - b); console.log(k, v.length, "p50", v[Math.floor(v.length/2)]!.toFixed(2)); } }
for (const [k, v] of Object.entries(Q)) { v.sort((a, b) => a - b); if (v.length > 50) console.log(v.length, "p50", v[Math.floor(v.length / 2)]!.toFixed(2), k); }
await server.close(); child.disconnect(); await admin.query(`DROP DATABASE ${db} WITH (FORCE)`); process.exit(0);
