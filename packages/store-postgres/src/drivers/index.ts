/**
 * The store's Postgres drivers, all behind `SqlClient` (`../sql.ts`): PGlite (embedded), the
 * Neon driver (WebSocket Pool, optionally `query()` over Neon's HTTP endpoint) and `pg` (TCP).
 *
 * All return the SAME JS types, so the store never sees which one runs:
 * - int2/int4 → number, float8 → number, numeric → string (exact decimal)
 * - int8 and bigserial → string (exact beyond 2^53; convert with Number() where small), int8[] → string[]
 * - json/jsonb → parsed JS value (object, array, string, number, boolean, null)
 * - timestamptz → Date; date → "YYYY-MM-DD" string; timestamp (no tz) → Date read in the
 *   process time zone by all (prefer timestamptz)
 * - bytea → Uint8Array (a Buffer, its subclass, from Neon and pg)
 *
 * Parameters: pass jsonb values as `JSON.stringify(value)`. All drivers send a string as-is,
 * but they disagree on raw JS arrays (node-postgres, so Neon and pg, makes them Postgres array
 * literals, PGlite JSON) and raw strings (none quotes them), so a pre-serialized string is the
 * one portable form. Dates may be passed as Date for timestamptz; bigint/number/string for int8.
 *
 * Errors: database errors carry the SQLSTATE in `code` on all (e.g. "23505"; a NeonDbError
 * over HTTP); a COMMIT of a transaction aborted by a swallowed error throws on all.
 */
export { createPgliteClient, type PgliteClient, type PgliteClientOptions } from "./pglite.ts";
export { TransactionAbortedError, type NeonClientOptions, type NeonHttpOptions } from "./neon.ts";
export { createNeonClient } from "./neon-node.ts";
export { createPgClient, type PgClientOptions } from "./pg.ts";
