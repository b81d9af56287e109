/**
 * Real PostgreSQL for tests, reached the production way: the Neon driver over WebSocket,
 * through the project's ws-tcp bridge to 127.0.0.1:5432. Each caller gets a database of
 * its own (created here, dropped on cleanup), so suites never see each other's rows.
 *
 * Without CI=true an unreachable server skips the suites that need it (with a visible note);
 * with CI=true they run and fail, so CI can never go green without touching Postgres.
 */
import { startWsTcpBridge, type WsTcpBridge } from "@stepwise/dev-bridges";
import { createNeonClient, PostgresStore, type SqlClient } from "@stepwise/store-postgres";
import { reachable } from "./net.ts";

const HOST = "127.0.0.1";
const PORT = 5432;
const ADMIN_URL = `postgres://postgres@${HOST}:${PORT}/test`;

/** Whether the real-Postgres suites run: always under CI, else when the server answers. */
export const postgresAvailable: boolean = process.env.CI === "true" || (await reachable(HOST, PORT));
if (!postgresAvailable) console.warn(`PostgreSQL at ${HOST}:${PORT} unreachable: skipping real-Postgres suites (CI=true makes this a failure)`);

let bridge: Promise<WsTcpBridge> | undefined;
/** One bridge per test process, shared by every database it opens. */
export function testBridge(): Promise<WsTcpBridge> {
  return (bridge ??= startWsTcpBridge());
}

export interface TestDatabase {
  connectionString: string;
  wsProxy: (host: string, port: number | string) => string;
  client(): SqlClient;
  store(): PostgresStore;
  drop(): Promise<void>;
}

export async function createTestDatabase(label = "t"): Promise<TestDatabase> {
  const { wsProxy } = await testBridge();
  const name = `stepwise_${label}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`.toLowerCase();
  const admin = createNeonClient({ connectionString: ADMIN_URL, wsProxy, max: 1 });
  await admin.query(`CREATE DATABASE ${name}`);
  const connectionString = `postgres://postgres@${HOST}:${PORT}/${name}`;
  const clients: SqlClient[] = [];
  const client = () => {
    const opened = createNeonClient({ connectionString, wsProxy, max: 10, onError: () => {} });
    clients.push(opened);
    return opened;
  };
  return {
    connectionString,
    wsProxy,
    client,
    store: () => new PostgresStore(client()),
    async drop() {
      await Promise.all(clients.map((c) => c.close().catch(() => {})));
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.close();
    },
  };
}
