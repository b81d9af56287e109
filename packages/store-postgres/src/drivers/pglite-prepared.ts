/**
 * Named prepared statements on PGlite. `PGlite.query()` sends every statement unnamed: Postgres
 * parses and plans it again at each call (planning also asks the file system for the size of
 * every table the statement touches), and the call crosses into WebAssembly five times (parse,
 * two describes, bind, execute). The store's hot statements are named (`{ prepare }`), so here
 * each is parsed once per database, with its parameter types, and each call after that is one
 * bind-execute-sync message. Measured on `stepwise dev` (bench scripts, 2026-12-04): a
 * checkpointed step 2.0-2.2 -> 0.9-1.2 ms, W2 500 -> 1,250 steps/s, the executor's CPU per W2
 * step 2.1 -> 0.85 ms (PGlite runs inside the executor's process).
 *
 * Calls hold PGlite's own locks, as `query()` does: outside a transaction both (so they never run
 * inside another task's open transaction), inside one only the statement lock (the transaction
 * holds the other).
 */
import { parse, protocol, type PGlite } from "@electric-sql/pglite";
import { joinChunks } from "@stepwise/protocol";

interface Statement {
  text: string;
  /** Type OIDs of the parameters, as Postgres inferred them: they pick each value's serializer. */
  paramTypes: number[];
}

export class PreparedStatements {
  private readonly statements = new Map<string, Statement>();

  constructor(private readonly db: PGlite) {}

  /** Runs statement `name` (prepared from `text` on first use) with `params`; returns its rows. */
  async run<Row>(name: string, text: string, params: readonly unknown[], where: { inTransaction: boolean }): Promise<Row[]> {
    // As `query()` does: it waits for PGlite to start, and refuses once the database is closed.
    await this.db._checkReady();
    return this.exclusive(where.inTransaction, async () => {
      const statement = this.statements.get(name) ?? (await this.prepare(name, text));
      // One name, one text: a second text under a taken name is a bug in the caller, said plainly.
      if (statement.text !== text) throw new Error(`Prepared statement "${name}" was already prepared with another text`);
      const { serialize } = protocol;
      const values = params.map((value, index) => {
        if (value === null || value === undefined) return null;
        const serializer = this.db.serializers[statement.paramTypes[index]!];
        return serializer ? serializer(value) : String(value);
      });
      const message = joinMessages([serialize.bind({ statement: name, values }), serialize.describe({ type: "P" }), serialize.execute({}), serialize.sync()]);
      const messages = await this.db.execProtocolStream(message, { syncToFs: false });
      // As `query()` does: a statement outside a transaction is synced to the file system at once.
      if (!where.inTransaction) await this.db.syncToFs();
      return (parse.parseResults(messages, this.db.parsers)[0]?.rows ?? []) as Row[];
    });
  }

  private async prepare(name: string, text: string): Promise<Statement> {
    const { serialize } = protocol;
    const messages = await this.db.execProtocolStream(joinMessages([serialize.parse({ name, text }), serialize.describe({ type: "S", name }), serialize.sync()]), { syncToFs: false });
    const description = messages.find((message) => message.name === "parameterDescription") as { dataTypeIDs?: number[] } | undefined;
    const statement = { text, paramTypes: description?.dataTypeIDs ?? [] };
    this.statements.set(name, statement);
    return statement;
  }

  private exclusive<T>(inTransaction: boolean, fn: () => Promise<T>): Promise<T> {
    if (inTransaction) return this.db._runExclusiveQuery(fn);
    return this.db._runExclusiveTransaction(() => this.db._runExclusiveQuery(fn));
  }
}

/** Protocol messages as one buffer: one trip into PGlite for all of them. */
function joinMessages(messages: Uint8Array[]): Uint8Array {
  return joinChunks(messages, messages.reduce((size, message) => size + message.byteLength, 0));
}
