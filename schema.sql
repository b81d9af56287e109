-- Stepwise: the system of record. Applied when this file's version is not yet recorded; every
-- statement is idempotent, so a database made by an earlier version is brought up to date.
-- Postgres owns the truth: apps, functions, events, runs, steps, waits and the job queue
-- (with Redis, Redis only indexes which jobs are due; everything there is rebuilt from here).
--
-- JSON values users give (event data, step outputs, errors, run outputs, frozen match values)
-- are stored as JSON text, not jsonb: jsonb cannot hold "\u0000" or a lone surrogate, and it
-- reorders object keys, while a value must come back exactly as JSON.stringify wrote it.

-- An app is one deployed /api/durable endpoint.
CREATE TABLE IF NOT EXISTS apps (
  id          text PRIMARY KEY,
  url         text NOT NULL,
  sdk         text NOT NULL DEFAULT '',
  synced_at   timestamptz NOT NULL DEFAULT now()
);
-- What the app's SDK declared it understands beyond the protocol's first version (a JSON array
-- of names, see AppDescription.features): the executor sends an app only what it can read.
ALTER TABLE apps ADD COLUMN IF NOT EXISTS features text NOT NULL DEFAULT '[]';

-- Versioned deploys: the version the app last registered with, and each version the executor
-- has seen with its deployment's own URL, where the app named one (NULL: the app's URL serves
-- it, which moves with the app). A run records the version it started on (runs.app_version) and
-- is invoked at that version's URL until the deployment is found gone (gone_at: it answered 404
-- or 410, or refused connections for a while); then at the app's URL. Registering the version
-- again brings it back. Versions neither current nor used by a live run go after the retention age.
ALTER TABLE apps ADD COLUMN IF NOT EXISTS version text;
CREATE TABLE IF NOT EXISTS app_versions (
  app_id     text NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  version    text NOT NULL,
  url        text,
  synced_at  timestamptz NOT NULL DEFAULT now(),
  gone_at    timestamptz,
  -- What that deployment's SDK understands (apps.features, for the version it serves).
  features   text NOT NULL DEFAULT '[]',
  PRIMARY KEY (app_id, version)
);
-- Connections refused by the deployment: since when (with no answer and no pause of a few
-- retries between), and the last. A restart refuses for seconds; a deployment that keeps
-- refusing for the executor's `deploymentGoneAfterMs` is gone (see DeploymentRefusals).
ALTER TABLE app_versions ADD COLUMN IF NOT EXISTS refused_since timestamptz;
ALTER TABLE app_versions ADD COLUMN IF NOT EXISTS refused_at timestamptz;

-- id is the executor's global ID: "<app id>-<function id>".
CREATE TABLE IF NOT EXISTS functions (
  id          text PRIMARY KEY,
  app_id      text NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  local_id    text NOT NULL,
  config      jsonb NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
-- A function its app no longer serves keeps its row, so another app cannot take its ID over
-- while its runs may still wake.
ALTER TABLE functions ADD COLUMN IF NOT EXISTS removed_at timestamptz;
-- Set while an operator has the function paused: its new runs are created held (paused_by
-- 'function' below, with no job), and a sync leaves it as it is.
ALTER TABLE functions ADD COLUMN IF NOT EXISTS paused_at timestamptz;
-- What its last resume did with the runs the pause held ('run' or 'skip'): a run an ingest that
-- began before the resume's commit held after it is treated the same way by maintenance.
ALTER TABLE functions ADD COLUMN IF NOT EXISTS held_runs text;

-- An event is stored before its sender hears "ok"; a repeated id is ignored (idempotent send).
-- seq orders events by arrival, for a wait that looks back at what arrived while it opened.
CREATE TABLE IF NOT EXISTS events (
  id           text PRIMARY KEY,
  name         text NOT NULL,
  data         text NOT NULL,
  ts           bigint NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE events ALTER COLUMN data TYPE text USING data::text;
ALTER TABLE events ADD COLUMN IF NOT EXISTS seq bigserial;
CREATE INDEX IF NOT EXISTS events_name_idx ON events (name, received_at);
CREATE INDEX IF NOT EXISTS events_name_seq_idx ON events (name, seq);
CREATE INDEX IF NOT EXISTS events_received_idx ON events (received_at);
-- The trace its sender was in (a W3C traceparent), so the runs it starts join that trace.
ALTER TABLE events ADD COLUMN IF NOT EXISTS traceparent text;
-- The event list (GET /api/events), newest first by arrival: a page is an index range.
CREATE INDEX IF NOT EXISTS events_seq_idx ON events (seq);

CREATE TABLE IF NOT EXISTS runs (
  id              text PRIMARY KEY,
  function_id     text NOT NULL,
  event_id        text NOT NULL,
  status          text NOT NULL,   -- queued | running | sleeping | waiting | completed | failed | cancelled | skipped
  attempt         integer NOT NULL DEFAULT 0,
  output          text,
  error           text,
  parent_run_id   text,
  parent_step_id  text,
  started_at      timestamptz NOT NULL DEFAULT now(),
  ended_at        timestamptz
);
ALTER TABLE runs ALTER COLUMN output TYPE text USING output::text;
ALTER TABLE runs ALTER COLUMN error TYPE text USING error::text;
-- Bumped by every change of the run's state (each takes the row lock through this column), so a
-- writer that prepared its change from a snapshot can apply it only if nothing moved since.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 0;
-- Bytes of JSON held in the run's step outputs and errors (sent with every invocation; bounded).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS state_bytes bigint NOT NULL DEFAULT 0;
-- The run's concurrency limits ([{ key, limit }]), fixed when it started; NULL: unlimited.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS concurrency jsonb;
CREATE INDEX IF NOT EXISTS runs_event_idx ON runs (event_id);
-- (It predates 'skipped', a run flow control created already ended; those few it holds too.)
CREATE INDEX IF NOT EXISTS runs_live_idx ON runs (status) WHERE status NOT IN ('completed', 'failed', 'cancelled');
CREATE INDEX IF NOT EXISTS runs_ended_idx ON runs (ended_at) WHERE ended_at IS NOT NULL;
-- The run list (GET /api/runs), newest first, of all functions or of one: a page is an index range.
CREATE INDEX IF NOT EXISTS runs_started_idx ON runs (started_at, id);
CREATE INDEX IF NOT EXISTS runs_function_started_idx ON runs (function_id, started_at, id);
-- A run an operator started again from another one's event: the run it replays, and for a rerun
-- the step it ran again from (the steps before it were copied from that run).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS replay_of text;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS rerun_from text;
-- A paused run has no job: nothing invokes it or fires its timers until it is resumed, which
-- queues the jobs its state calls for. paused_by: 'operator' (the run was paused) or 'function'
-- (it started while its function was paused, and waits for the function's resume).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS paused_at timestamptz;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS paused_by text;
-- The trace the run's spans belong to (its event's traceparent), if its event came with one.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS traceparent text;
CREATE INDEX IF NOT EXISTS runs_held_idx ON runs (function_id) WHERE paused_by = 'function';
-- The version of its app the run started on (see app_versions), if its app named one.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS app_version text;

-- One row per step a run reached, keyed by step ID; position is the order of discovery,
-- used to detect a function whose steps changed under a live run.
CREATE TABLE IF NOT EXISTS steps (
  run_id      text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  id          text NOT NULL,
  name        text NOT NULL,
  kind        text NOT NULL,   -- run | sleep | wait | send | invoke
  position    integer NOT NULL,
  status      text NOT NULL,   -- planned | retrying | sleeping | waiting | invoking | completed | failed | cancelled
  output      text,
  error       text,
  attempts    integer NOT NULL DEFAULT 0,
  wake_at     timestamptz,
  started_at  timestamptz NOT NULL DEFAULT now(),
  ended_at    timestamptz,
  PRIMARY KEY (run_id, id)
);
ALTER TABLE steps ALTER COLUMN output TYPE text USING output::text;
ALTER TABLE steps ALTER COLUMN error TYPE text USING error::text;
-- A step.run's own retry policy ({ retries, backoff } as JSON), when its code gives one.
ALTER TABLE steps ADD COLUMN IF NOT EXISTS retry_policy text;
-- Tokens a model call of the step spent ({ model?, inputTokens, outputTokens } as JSON).
ALTER TABLE steps ADD COLUMN IF NOT EXISTS usage text;

-- Open matchers against incoming events: a step.waitForEvent (kind 'wait') or a cancelOn
-- (kind 'cancel'). match_value is the trigger's value at match_path (JSON text), frozen when
-- opened; NULL with a match_path means the trigger had no such field, and nothing matches.
CREATE TABLE IF NOT EXISTS matchers (
  run_id       text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step_id      text NOT NULL,   -- the waiting step, or 'cancel:<n>' for the n-th cancelOn entry
  kind         text NOT NULL,
  event_name   text NOT NULL,
  match_path   text,
  match_value  text,
  if_expr      text,
  expires_at   timestamptz,
  PRIMARY KEY (run_id, step_id)
);
ALTER TABLE matchers ALTER COLUMN match_value TYPE text USING match_value::text;
CREATE INDEX IF NOT EXISTS matchers_event_idx ON matchers (event_name);
-- Waits on the executor's own events by their value: a signal's name (short, bounded). A query
-- uses it when it repeats the predicate word for word, which a prepared statement's generic plan
-- needs (it cannot tell that its $1 is 'stepwise/signal').
CREATE INDEX IF NOT EXISTS matchers_reserved_value_idx ON matchers (match_value) WHERE event_name LIKE 'stepwise/%';

-- The queue: invocations and timers. A job is due at run_at; a claim leases it to one worker
-- until locked_until, and only the lease holder may complete it (the fence), whichever queue
-- handed it out. failures counts errors inside the executor while applying it.
CREATE TABLE IF NOT EXISTS jobs (
  id            bigserial PRIMARY KEY,
  kind          text NOT NULL,   -- invoke | wake | wait-timeout | invoke-timeout
  run_id        text NOT NULL,
  step_id       text,
  run_at        timestamptz NOT NULL DEFAULT now(),
  locked_by     text,
  locked_until  timestamptz,
  claims        integer NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS failures integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS last_error text;
-- When the job first became due (store clock): a wait its invocation opens looks back to then.
-- Unlike run_at it stays as it is when the job is given back and delayed.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS ready_at timestamptz;
-- An invocation of a run with concurrency limits carries them ([{ key, limit }], the run's): it
-- is claimed through its keys (concurrency_keys below), never by the plain claim, and while it
-- is leased it holds a slot of each.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS concurrency jsonb;
DROP INDEX IF EXISTS jobs_due_idx;
DROP INDEX IF EXISTS jobs_free_idx;
CREATE INDEX IF NOT EXISTS jobs_plain_due_idx ON jobs (run_at, id) WHERE concurrency IS NULL;
CREATE INDEX IF NOT EXISTS jobs_plain_free_idx ON jobs (run_at) WHERE locked_until IS NULL AND concurrency IS NULL;
CREATE INDEX IF NOT EXISTS jobs_run_idx ON jobs (run_id);
CREATE INDEX IF NOT EXISTS jobs_leased_idx ON jobs (locked_until) WHERE locked_until IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_key1_idx ON jobs ((concurrency->0->>'key'), run_at, id) WHERE concurrency IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_key2_idx ON jobs ((concurrency->1->>'key'), run_at, id) WHERE concurrency->1 IS NOT NULL;
-- A run has at most one job per purpose (one invocation, one branch or retry per step, one timer
-- per step): a second one would start a second chain of invocations. Duplicates an earlier
-- version may have left are dropped first.
DELETE FROM jobs a USING jobs b
 WHERE a.run_id = b.run_id AND a.kind = b.kind AND coalesce(a.step_id, '') = coalesce(b.step_id, '') AND a.id > b.id;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_purpose_idx ON jobs (run_id, kind, coalesce(step_id, ''));
-- Jobs of runs that already ended do nothing; an earlier version left them behind.
DELETE FROM jobs j USING runs r WHERE r.id = j.run_id AND r.status IN ('completed', 'failed', 'cancelled', 'skipped');

-- Idempotency keys (a function's `idempotency` expression evaluated on an event): the run that
-- holds each, until it expires; an event whose key is held starts no run of the function.
CREATE TABLE IF NOT EXISTS idempotency_keys (
  function_id  text NOT NULL,
  key          text NOT NULL,
  run_id       text NOT NULL,
  expires_at   timestamptz NOT NULL,
  PRIMARY KEY (function_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_idx ON idempotency_keys (expires_at);

-- rateLimit: per function and key, the theoretical arrival time of the next run (GCRA): a run
-- may start while it is no further ahead of now than the period allows.
CREATE TABLE IF NOT EXISTS rate_limits (
  function_id  text NOT NULL,
  key          text NOT NULL,
  tat          timestamptz NOT NULL,
  PRIMARY KEY (function_id, key)
);

-- throttle: per function and key, the theoretical arrival time of the next start (GCRA). A run
-- over the limit is not refused: its first invocation is queued for when the limit allows.
CREATE TABLE IF NOT EXISTS throttles (
  function_id  text NOT NULL,
  key          text NOT NULL,
  tat          timestamptz NOT NULL,
  PRIMARY KEY (function_id, key)
);

-- singleton: per function and key, the run that holds it. A run holds it while it is live; the
-- next run of the key takes it over once the holder ended (or, in cancel mode, cancels it).
CREATE TABLE IF NOT EXISTS singletons (
  function_id  text NOT NULL,
  key          text NOT NULL,
  run_id       text NOT NULL,
  PRIMARY KEY (function_id, key)
);

-- debounce: per function and key, the run that will start with the latest event, and when its
-- burst's first event arrived (a timeout counts from then). A later event replaces that run while
-- its first invocation has not been handed out; once it has, the next event opens a new burst.
CREATE TABLE IF NOT EXISTS debounces (
  function_id  text NOT NULL,
  key          text NOT NULL,
  run_id       text NOT NULL,
  opened_at    timestamptz NOT NULL,
  PRIMARY KEY (function_id, key)
);

-- batchEvents: per function and key, the open batch: the run it will start, how many events and
-- bytes of event data it holds so far. A batch closes (its row goes) when it is full; a batch
-- whose run was handed out at its timeout is closed too, and the next event opens another.
CREATE TABLE IF NOT EXISTS batches (
  function_id  text NOT NULL,
  key          text NOT NULL,
  run_id       text NOT NULL,
  size         integer NOT NULL,
  bytes        bigint NOT NULL,
  opened_at    timestamptz NOT NULL,
  PRIMARY KEY (function_id, key)
);

-- The events of a batch's run, in order of arrival (position 0 is the run's event_id), however
-- few. A run not started as a batch has no rows here. The reference is checked at commit: an event joins its batch in
-- the transaction that creates the batch's run, before the run's row is written.
CREATE TABLE IF NOT EXISTS run_events (
  run_id    text NOT NULL REFERENCES runs(id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  position  integer NOT NULL,
  event_id  text NOT NULL,
  PRIMARY KEY (run_id, position)
);
CREATE INDEX IF NOT EXISTS run_events_event_idx ON run_events (event_id);

-- Live progress a run published (a handler's publish(topic, data)), for GET /api/runs/:id/stream.
-- Not part of the run: kept a while for readers that reconnect (the last 1,000 of a run, for an
-- hour; maintenance and each publish prune), and gone with the run. seq counts a run's messages
-- from 1, given under a lock per run, so a reader that saw seq n has seen every message before it.
CREATE TABLE IF NOT EXISTS run_messages (
  run_id        text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  seq           bigint NOT NULL,
  topic         text NOT NULL,
  data          text NOT NULL,
  published_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS run_messages_published_idx ON run_messages (published_at);

-- The queue of concurrency keys: each key with invocations waiting for a slot, and when a claim
-- should look at it next (their earliest due time; a while later when its slots were all taken,
-- sooner when one is freed). A claim locks the rows of the keys it grants slots of, so two
-- executors never count the same key at once. A row with nothing to wait for is pruned.
CREATE TABLE IF NOT EXISTS concurrency_keys (
  key      text PRIMARY KEY,
  next_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS concurrency_keys_next_idx ON concurrency_keys (next_at);

-- Keys a commit queued invocations of, waiting for a slot, and when the earliest is due: the
-- next claim folds them into concurrency_keys. A commit appends here rather than update the
-- key's row, so it holds no lock on that row until it ends: a claim would pass the key over
-- meanwhile (one hot key under heavy ingest was claimed in a fraction of the rounds), and two
-- commits locking the rows of several keys in different orders could deadlock.
CREATE TABLE IF NOT EXISTS concurrency_wakes (
  id      bigserial PRIMARY KEY,
  key     text NOT NULL,
  run_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS concurrency_wakes_run_at_idx ON concurrency_wakes (run_at);

-- The claim of invocations waiting for concurrency slots: leases up to p_room of them, to
-- p_owner, while every key of each has room (packages/store-postgres/src/concurrency-claim.ts
-- says why it works as it does). One call is one statement, so one round trip on any driver,
-- HTTP included, and atomic whatever happens to the executor. As a VOLATILE function under
-- READ COMMITTED each statement in it reads a snapshot of its own, taken after the key rows
-- locked before it: the slots it counts in use are ones no other claim can grant meanwhile.
-- Nothing in it waits on a lock (every lock is SKIP LOCKED), but for a key row that another
-- claim's fold made in the same moment.
CREATE OR REPLACE FUNCTION stepwise_claim_keyed(
  p_owner text, p_room integer, p_lease_ms float8,
  p_min_keys integer, p_full_recheck_ms float8, p_busy_retry_ms float8
) RETURNS SETOF jobs LANGUAGE plpgsql VOLATILE AS $claim$
DECLARE
  v_keys text[];                  -- due keys this claim locked
  v_locked text[];                -- every key it holds: those, and other keys of their jobs
  v_counted text[] := '{}';       -- keys whose slots in use were counted, and beside each
  v_used integer[] := '{}';       -- how many are in use, with those this claim granted
  v_chosen bigint[] := '{}';      -- jobs it leases
  v_seen bigint[] := '{}';        -- jobs already decided on
  v_full text[] := '{}';          -- keys with no slot left for a job that wanted one
  v_stuck text[] := '{}';         -- keys none of whose jobs could go, held back by another key
  v_busy text[] := '{}';          -- keys whose job waits on a key another claim holds
  v_look text[];
  v_pass_over text[];
  v_ids bigint[];                 -- candidates, in order, and beside each: its keys and limits
  v_key1 text[];                  -- (a run has at most two; the second is NULL when it has one)
  v_key2 text[];
  v_limit1 integer[];
  v_limit2 integer[];
  v_held boolean[];
  v_at1 integer;                  -- where a candidate's keys are in v_counted (NULL: not held)
  v_at2 integer;
  v_others text[];
  v_uncounted text[];
  v_granted text[];
  v_refused text[];
  v_job jobs;
BEGIN
  -- Under REPEATABLE READ or SERIALIZABLE every read would see the transaction's first snapshot,
  -- taken before any of the locks, and slots granted meanwhile would go uncounted.
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'stepwise_claim_keyed counts slots correctly only under READ COMMITTED, not %', current_setting('transaction_isolation')
      USING HINT = 'Run the executor with default_transaction_isolation = ''read committed'' (the default).';
  END IF;
  IF p_room <= 0 THEN RETURN; END IF;
  -- The wakes commits left, folded into their keys' rows (made for keys that have none). The
  -- wakes of a key whose row someone else holds (another claim, a notice) stay for a later
  -- claim: waiting for that row would make every claim, plain jobs' included, wait behind the
  -- slowest claim of a hot key. (Looked for first: most claims find none.)
  IF EXISTS (SELECT 1 FROM concurrency_wakes) THEN
    WITH wakes AS (
      SELECT id, key, run_at FROM concurrency_wakes ORDER BY id LIMIT 10000 FOR UPDATE SKIP LOCKED),
    free AS (
      SELECT k.key FROM concurrency_keys k WHERE k.key IN (SELECT key FROM wakes) ORDER BY k.key FOR UPDATE SKIP LOCKED),
    rowless AS (
      SELECT DISTINCT w.key FROM wakes w WHERE NOT EXISTS (SELECT 1 FROM concurrency_keys k WHERE k.key = w.key)),
    folded AS (
      DELETE FROM concurrency_wakes w
      WHERE w.id IN (SELECT id FROM wakes WHERE key IN (SELECT key FROM free) OR key IN (SELECT key FROM rowless))
      RETURNING w.key, w.run_at)
    INSERT INTO concurrency_keys AS k (key, next_at)
    SELECT f.key, min(f.run_at) FROM folded f GROUP BY f.key ORDER BY f.key
    ON CONFLICT (key) DO UPDATE SET next_at = excluded.next_at WHERE excluded.next_at < k.next_at;
  END IF;
  SELECT array_agg(k.key) INTO v_keys FROM (
    SELECT key FROM concurrency_keys WHERE next_at <= now() ORDER BY next_at
    LIMIT greatest(p_room, p_min_keys) FOR UPDATE SKIP LOCKED) k;
  IF v_keys IS NULL THEN RETURN; END IF;
  v_locked := v_keys;

  -- Two looks at most: jobs held back by a full key may hide, in a key's window, the ones that
  -- can go, so a second look passes over every job of a key the first found full.
  FOR v_pass IN 1..2 LOOP
    IF v_pass = 1 THEN
      v_look := v_keys;
      v_pass_over := '{}';
    ELSE
      v_look := ARRAY(SELECT unnest(v_keys) EXCEPT SELECT unnest(v_full));
      EXIT WHEN cardinality(v_chosen) >= p_room OR cardinality(v_full) = 0 OR cardinality(v_look) = 0;
      v_pass_over := v_full;
    END IF;

    -- Candidates: due jobs of each key no live lease holds, at most p_room per key, in order
    -- (through either key's index), and jobs whose lease ran out, which still hold their
    -- slots and go first. Each is locked, or skipped if another claim has it.
    SELECT array_agg(c.id ORDER BY c.held DESC, c.run_at, c.id),
           array_agg(c.concurrency->0->>'key' ORDER BY c.held DESC, c.run_at, c.id),
           array_agg(c.concurrency->1->>'key' ORDER BY c.held DESC, c.run_at, c.id),
           array_agg((c.concurrency->0->>'limit')::int ORDER BY c.held DESC, c.run_at, c.id),
           array_agg((c.concurrency->1->>'limit')::int ORDER BY c.held DESC, c.run_at, c.id),
           array_agg(c.held ORDER BY c.held DESC, c.run_at, c.id)
      INTO v_ids, v_key1, v_key2, v_limit1, v_limit2, v_held
    FROM (
      SELECT DISTINCT ON (u.id) u.* FROM (
        SELECT x.* FROM unnest(v_look) AS q(key) CROSS JOIN LATERAL (
          SELECT j.id, j.run_at, j.concurrency, j.locked_by IS NOT NULL AS held FROM jobs j
          WHERE j.concurrency IS NOT NULL AND j.concurrency->0->>'key' = q.key
            AND j.run_at <= now() AND (j.locked_until IS NULL OR j.locked_until < now())
            AND NOT coalesce(j.concurrency->0->>'key' = ANY (v_pass_over), false)
            AND NOT coalesce(j.concurrency->1->>'key' = ANY (v_pass_over), false)
          ORDER BY j.run_at, j.id LIMIT p_room FOR UPDATE SKIP LOCKED) x
        UNION ALL
        SELECT x.* FROM unnest(v_look) AS q(key) CROSS JOIN LATERAL (
          SELECT j.id, j.run_at, j.concurrency, j.locked_by IS NOT NULL AS held FROM jobs j
          WHERE j.concurrency->1 IS NOT NULL AND j.concurrency->1->>'key' = q.key
            AND j.run_at <= now() AND (j.locked_until IS NULL OR j.locked_until < now())
            AND NOT coalesce(j.concurrency->0->>'key' = ANY (v_pass_over), false)
            AND NOT coalesce(j.concurrency->1->>'key' = ANY (v_pass_over), false)
          ORDER BY j.run_at, j.id LIMIT p_room FOR UPDATE SKIP LOCKED) x
        UNION ALL
        SELECT x.* FROM (
          SELECT j.id, j.run_at, j.concurrency, true AS held FROM jobs j
          WHERE j.locked_until < now() AND j.concurrency IS NOT NULL
            AND (j.concurrency->0->>'key' = ANY (v_look) OR coalesce(j.concurrency->1->>'key' = ANY (v_look), false))
          FOR UPDATE SKIP LOCKED) x
      ) u WHERE u.id <> ALL (v_seen) ORDER BY u.id
    ) c;
    v_ids := coalesce(v_ids, '{}');

    -- A job's other key is counted only under its lock too; a job with a key another claim
    -- holds is passed over for now.
    v_others := ARRAY(
      SELECT DISTINCT k FROM unnest(v_key1 || v_key2) AS k WHERE k IS NOT NULL AND NOT (k = ANY (v_locked)));
    IF cardinality(v_others) > 0 THEN
      SELECT v_locked || coalesce(array_agg(k.key), '{}') INTO v_locked FROM (
        SELECT key FROM concurrency_keys WHERE key = ANY (v_others) FOR UPDATE SKIP LOCKED) k;
    END IF;

    -- Slots in use of the keys now held and not counted yet: invocations with a lease, live or
    -- run out (a stalled worker may go on; only a claim that takes its job again frees it).
    -- `locked_until IS NOT NULL`, set and cleared with the holder, reaches them through the
    -- leases' index; `locked_by` would read the whole table (test/plans-by-key.test.ts).
    v_uncounted := ARRAY(SELECT unnest(v_locked) EXCEPT SELECT unnest(v_counted));
    SELECT v_counted || coalesce(array_agg(k.key), '{}'), v_used || coalesce(array_agg(coalesce(u.used, 0)), '{}')
      INTO v_counted, v_used
    FROM unnest(v_uncounted) AS k(key)
    LEFT JOIN (
      SELECT s.slot->>'key' AS key, count(*)::int AS used
      FROM jobs j, jsonb_array_elements(j.concurrency) AS s(slot)
      WHERE j.locked_until IS NOT NULL AND j.concurrency IS NOT NULL AND s.slot->>'key' = ANY (v_uncounted)
      GROUP BY 1
    ) u ON u.key = k.key;

    -- In order, each job whose keys all have room takes a slot of each. (Only plain expressions
    -- in this loop, no queries: a query per candidate made a claim of 100 cost 4 ms more.)
    v_granted := '{}';
    v_refused := '{}';
    FOR i IN 1..cardinality(v_ids) LOOP
      v_seen := v_seen || v_ids[i];
      EXIT WHEN cardinality(v_chosen) >= p_room;
      v_at1 := array_position(v_counted, v_key1[i]);
      v_at2 := array_position(v_counted, v_key2[i]);
      IF v_at1 IS NULL OR (v_key2[i] IS NOT NULL AND v_at2 IS NULL) THEN
        v_busy := v_busy || array_remove(ARRAY[CASE WHEN v_at1 IS NOT NULL THEN v_key1[i] END, CASE WHEN v_at2 IS NOT NULL THEN v_key2[i] END], NULL);
        CONTINUE;
      END IF;
      -- A job whose lease ran out already holds its slots: taking it again takes none.
      IF NOT v_held[i] AND (v_used[v_at1] >= v_limit1[i] OR coalesce(v_used[v_at2] >= v_limit2[i], false)) THEN
        v_full := v_full || array_remove(ARRAY[
          CASE WHEN v_used[v_at1] >= v_limit1[i] THEN v_key1[i] END,
          CASE WHEN v_used[v_at2] >= v_limit2[i] THEN v_key2[i] END], NULL);
        v_refused := v_refused || array_remove(ARRAY[v_key1[i], v_key2[i]], NULL);
        CONTINUE;
      END IF;
      IF NOT v_held[i] THEN
        v_used[v_at1] := v_used[v_at1] + 1;
        IF v_at2 IS NOT NULL THEN v_used[v_at2] := v_used[v_at2] + 1; END IF;
      END IF;
      v_granted := v_granted || array_remove(ARRAY[v_key1[i], v_key2[i]], NULL);
      v_chosen := v_chosen || v_ids[i];
    END LOOP;
    v_stuck := ARRAY(SELECT unnest(v_stuck) UNION SELECT unnest(v_refused) EXCEPT SELECT unnest(v_granted));
  END LOOP;

  FOR v_job IN
    -- From the moment of the lease, not the call's start (now()): a long claim would shorten it.
    UPDATE jobs SET locked_by = p_owner, locked_until = clock_timestamp() + make_interval(secs => p_lease_ms / 1000), claims = claims + 1
    WHERE id = ANY (v_chosen) RETURNING jobs.*
  LOOP
    RETURN NEXT v_job;
  END LOOP;

  -- Out of room: the keys stay due for the next claim. Otherwise each is next looked at when
  -- it has something to grant: its earliest waiting job, or a while later when nothing could go.
  IF cardinality(v_chosen) < p_room THEN
    UPDATE concurrency_keys k SET next_at = CASE
      WHEN k.key = ANY (ARRAY(SELECT unnest(v_full || v_stuck) INTERSECT SELECT unnest(v_locked)))
        THEN clock_timestamp() + make_interval(secs => p_full_recheck_ms / 1000)
      WHEN k.key = ANY (v_busy) THEN clock_timestamp() + make_interval(secs => p_busy_retry_ms / 1000)
      ELSE coalesce(least(
        (SELECT min(run_at) FROM jobs WHERE concurrency IS NOT NULL AND concurrency->0->>'key' = k.key AND locked_until IS NULL),
        (SELECT min(run_at) FROM jobs WHERE concurrency->1 IS NOT NULL AND concurrency->1->>'key' = k.key AND locked_until IS NULL)),
        'infinity') END
    WHERE k.key = ANY (v_locked);
  END IF;
END
$claim$;

-- A batch of checkpoints of distinct runs, skipping rows another transaction holds
-- (packages/store-postgres/src/checkpoint-sql.ts says what each row of the answer means): p_input
-- the checkpoints, each with its index; p_runs and p_jobs their runs' and jobs' IDs as JSON
-- arrays. The runs are found by `= ANY` of p_runs, not by a join with the checkpoints: between
-- about 5,000 and 40,000 stored runs that join scanned the whole `runs` table. (p_jobs serves
-- only to tell a job another transaction holds from one lost.)
--
-- A function, with sequential scans off while it runs, so that its plan never reads a table
-- whole, whatever the planner's statistics say. The executor runs it on every batch and Postgres
-- keeps one plan for any parameters once it has run a few times; planned while the store was
-- new (its tables small, never analyzed), that plan read the whole `runs` table for each batch
-- and went on doing so as the table grew, until the next ANALYZE: 7.4 ms a batch of 30 at 20,000
-- runs, against 1.6 ms (test/plans-made-small.test.ts builds that store).
--
-- And with that one plan from its first run on each connection (plan_cache_mode): left to
-- itself, Postgres plans the statement afresh for the arguments of its first five runs on a
-- connection before it keeps one, and planning it costs more than running it. In the bench's
-- W1-W3, stepwise_apply_changes took 4.4-5.7 ms on average in those runs and 1.7-1.8 with one
-- plan from the start. Each of the executor's ten connections pays that, and so does every
-- connection the pool opens again after closing one idle. The plan kept is the generic one
-- either way: the one the plan tests check. (plan_cache_mode needs PostgreSQL 12 or later.)
--
-- To change its result columns, give it a new name: CREATE OR REPLACE cannot change the result
-- type of a function a database already has, and the migration would fail there.
CREATE OR REPLACE FUNCTION stepwise_checkpoints(p_input jsonb, p_runs jsonb, p_jobs jsonb)
RETURNS TABLE (idx integer, found boolean, held boolean, status text, same_function boolean, "full" boolean, leased boolean, version integer)
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $checkpoints$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH input AS (
    SELECT * FROM jsonb_to_recordset(p_input) AS c(idx int, run_id text, function_id text, job_id bigint, owner text, claims int,
         lease_ms float8, step_id text, name text, position int, output text, usage text, started_at timestamptz, ended_at timestamptz,
         bytes bigint, max_bytes bigint)
  ),
  run AS (
    SELECT r.id, r.status, r.function_id, r.state_bytes, r.paused_at FROM runs r
    WHERE r.id = ANY ((SELECT array_agg(value::text) FROM jsonb_array_elements_text(p_runs))::text[]) FOR UPDATE SKIP LOCKED
  ),
  open AS (
    SELECT i.* FROM input i JOIN run r ON r.id = i.run_id
    WHERE r.status NOT IN ('completed', 'failed', 'cancelled', 'skipped') AND r.paused_at IS NULL AND r.function_id = i.function_id AND r.state_bytes + i.bytes <= i.max_bytes
  ),
  job AS (
    SELECT j.id, o.idx FROM jobs j JOIN open o ON j.id = o.job_id
    WHERE j.run_id = o.run_id AND j.kind = 'invoke' AND j.step_id IS NULL
      AND j.locked_by = o.owner AND j.claims = o.claims AND j.locked_until > now()
    FOR UPDATE OF j SKIP LOCKED
  ),
  lease AS (
    UPDATE jobs j SET locked_until = now() + make_interval(secs => o.lease_ms / 1000)
    FROM job, open o
    WHERE j.id = job.id AND o.idx = job.idx AND j.locked_until < now() + make_interval(secs => o.lease_ms / 2000)
  ),
  saved AS (
    INSERT INTO steps (run_id, id, name, kind, position, status, output, usage, attempts, started_at, ended_at)
    -- The executor's clock, as started_at (an older executor sends none: the statement's).
    SELECT i.run_id, i.step_id, i.name, 'run', i.position, 'completed', i.output, i.usage, 1, i.started_at, coalesce(i.ended_at, now())
    FROM input i WHERE i.idx IN (SELECT job.idx FROM job)
    ON CONFLICT (run_id, id) DO NOTHING
    RETURNING steps.run_id
  ),
  bumped AS (
    UPDATE runs SET version = runs.version + 1, state_bytes = runs.state_bytes + i.bytes,
      status = CASE WHEN runs.status = 'queued' THEN 'running' ELSE runs.status END
    FROM input i
    WHERE runs.id = i.run_id AND i.run_id IN (SELECT saved.run_id FROM saved)
    RETURNING runs.id, runs.version
  )
  SELECT i.idx,
         r.id IS NOT NULL,
         -- Held: the run is there but was not locked, or the job is there, leased as the
         -- checkpoint says, but was not locked.
         (r.id IS NULL AND i.run_id IN (SELECT runs.id FROM runs WHERE runs.id = ANY ((SELECT array_agg(value::text) FROM jsonb_array_elements_text(p_runs))::text[])))
           OR (i.idx IN (SELECT open.idx FROM open) AND i.idx NOT IN (SELECT job.idx FROM job) AND (i.job_id, i.run_id, i.owner, i.claims) IN (
             SELECT jobs.id, jobs.run_id, jobs.locked_by, jobs.claims FROM jobs
             WHERE jobs.id = ANY ((SELECT array_agg(value::bigint) FROM jsonb_array_elements_text(p_jobs))::bigint[]) AND jobs.locked_until > now())),
         r.status,
         coalesce(r.function_id = i.function_id, false),
         coalesce(r.state_bytes + i.bytes > i.max_bytes, false),
         i.idx IN (SELECT job.idx FROM job),
         b.version
  FROM input i LEFT JOIN run r ON r.id = i.run_id LEFT JOIN bumped b ON b.id = i.run_id
  ORDER BY i.idx;
END
$checkpoints$;

-- Changes to distinct runs in one statement (packages/store-postgres/src/change-writer.ts
-- gathers them): what `APPLY_CHANGE` in packages/store-postgres/src/change-sql.ts writes for one
-- run, each change under its own guards, and skipping rows another transaction holds. p_input
-- holds the changes, each with its index, run, expected version, fence (the job it deletes, and
-- whether that job is taken unclaimed or held by `owner`) and `doc`, the change as
-- `change-sql.ts` encodes it; p_runs and p_jobs are the runs' and the fences' jobs' IDs as JSON
-- arrays, reached by `= ANY` as in stepwise_checkpoints, with sequential scans off and one plan
-- from the start, for the reasons given there. A change whose run or job another transaction
-- holds comes back `held` and wrote nothing: the executor writes it again alone, waiting its
-- turn. One whose guard failed (the run moved on, the lease was lost) comes back with no
-- version, and wrote nothing either.
CREATE OR REPLACE FUNCTION stepwise_apply_changes(p_input jsonb, p_runs jsonb, p_jobs jsonb)
RETURNS TABLE (idx integer, held boolean, version integer, queued_jobs json, deleted_jobs json)
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $changes$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH input AS (
    SELECT * FROM jsonb_to_recordset(p_input) AS c(idx int, run_id text, version int, job_id bigint, owner text, unclaimed boolean, doc jsonb)
  ),
  run AS (
    SELECT r.id, r.version FROM runs r
    WHERE r.id = ANY ((SELECT array_agg(value::text) FROM jsonb_array_elements_text(p_runs))::text[]) FOR UPDATE SKIP LOCKED
  ),
  locked AS (SELECT i.* FROM input i JOIN run r ON r.id = i.run_id AND r.version = i.version),
  -- The fence: each change's job, still due and free (unclaimed) or still its owner's.
  job AS (
    SELECT j.id, l.idx FROM jobs j JOIN locked l ON j.id = l.job_id
    WHERE CASE WHEN l.unclaimed THEN j.run_at <= now() AND (j.locked_until IS NULL OR j.locked_until < now()) ELSE j.locked_by = l.owner END
    FOR UPDATE OF j SKIP LOCKED
  ),
  ok AS (SELECT l.* FROM locked l WHERE l.idx IN (SELECT job.idx FROM job)),
  done AS (DELETE FROM jobs j USING job WHERE j.id = job.id RETURNING j.id, job.idx),
  bumped AS (
    UPDATE runs SET version = runs.version + 1,
      status = coalesce(p.status, runs.status),
      attempt = coalesce(p.attempt, runs.attempt),
      output = CASE WHEN p.has_output THEN p.output ELSE runs.output END,
      error = CASE WHEN p.has_error THEN p.error ELSE runs.error END,
      ended_at = coalesce(p.ended_at, runs.ended_at),
      state_bytes = coalesce(p.state_bytes, runs.state_bytes),
      paused_at = CASE WHEN p.has_paused THEN p.paused_at ELSE runs.paused_at END,
      paused_by = CASE WHEN p.has_paused THEN p.paused_by ELSE runs.paused_by END
    FROM ok, jsonb_to_record(ok.doc->'run') AS p(status text, attempt int, output text, has_output boolean,
      error text, has_error boolean, ended_at timestamptz, state_bytes bigint, has_paused boolean, paused_at timestamptz, paused_by text)
    WHERE runs.id = ok.run_id
    RETURNING runs.id, runs.version
  ),
  saved AS (
    INSERT INTO steps (run_id, id, name, kind, position, status, output, error, attempts, retry_policy, usage, wake_at, started_at, ended_at)
    SELECT ok.run_id, s.id, s.name, s.kind, s.position, s.status, s.output, s.error, s.attempts, s.retry_policy, s.usage, s.wake_at, s.started_at, s.ended_at
    FROM ok, jsonb_to_recordset(ok.doc->'steps') AS s(id text, name text, kind text, position int, status text, output text,
         error text, attempts int, retry_policy text, usage text, wake_at timestamptz, started_at timestamptz, ended_at timestamptz)
    ON CONFLICT (run_id, id) DO UPDATE SET
      status = EXCLUDED.status, output = EXCLUDED.output, error = EXCLUDED.error,
      attempts = EXCLUDED.attempts, retry_policy = EXCLUDED.retry_policy, usage = EXCLUDED.usage, wake_at = EXCLUDED.wake_at, ended_at = EXCLUDED.ended_at
    RETURNING 1
  ),
  dropped AS (
    DELETE FROM jobs j USING ok
    WHERE j.run_id = ok.run_id AND j.id IS DISTINCT FROM ok.job_id
      AND (((ok.doc->>'drop_all')::boolean AND NOT (j.concurrency IS NOT NULL AND j.locked_by IS NOT NULL))
        OR EXISTS (SELECT 1 FROM jsonb_to_recordset(ok.doc->'drop') AS d(kind text, step_id text)
                   WHERE d.kind = j.kind AND d.step_id IS NOT DISTINCT FROM j.step_id))
    RETURNING j.id, j.run_id
  ),
  queued AS (
    INSERT INTO jobs (kind, run_id, step_id, run_at, ready_at, locked_by, locked_until, claims, concurrency)
    SELECT q.kind, ok.run_id, q.step_id,
           coalesce(q.run_at, now() + make_interval(secs => coalesce(q.delay_ms, 0) / 1000.0)),
           greatest(clock_timestamp(), coalesce(q.run_at, now() + make_interval(secs => coalesce(q.delay_ms, 0) / 1000.0))),
           q.locked_by,
           CASE WHEN q.locked_by IS NULL THEN NULL ELSE clock_timestamp() + make_interval(secs => q.lease_ms / 1000.0) END,
           CASE WHEN q.locked_by IS NULL THEN 0 ELSE 1 END,
           q.concurrency
    FROM ok, jsonb_to_recordset(ok.doc->'jobs') AS q(kind text, step_id text, run_at timestamptz, delay_ms float8, locked_by text, lease_ms float8, concurrency jsonb)
    -- After the deletions, so a job replacing one of them never meets it in the unique index.
    WHERE (SELECT count(*) FROM done) >= 0 AND (SELECT count(*) FROM dropped) >= 0
    ON CONFLICT DO NOTHING
    RETURNING *
  ),
  keyed AS (
    INSERT INTO concurrency_wakes (key, run_at)
    SELECT s.slot->>'key', min(q.run_at) FROM queued q, jsonb_array_elements(q.concurrency) AS s(slot)
    WHERE q.concurrency IS NOT NULL AND q.locked_by IS NULL
    GROUP BY 1
    RETURNING 1
  ),
  closed AS (
    DELETE FROM matchers m USING ok
    WHERE m.run_id = ok.run_id
      AND ((ok.doc->>'close_all')::boolean OR m.step_id IN (SELECT jsonb_array_elements_text(ok.doc->'close')))
    RETURNING 1
  ),
  opened AS (
    INSERT INTO matchers (run_id, step_id, kind, event_name, match_path, match_value, if_expr, expires_at)
    SELECT ok.run_id, m.step_id, m.kind, m.event_name, m.match_path, m.match_value, m.if_expr, m.expires_at
    FROM ok, jsonb_to_recordset(ok.doc->'open') AS m(step_id text, kind text, event_name text, match_path text, match_value text, if_expr text, expires_at timestamptz)
    WHERE (SELECT count(*) FROM closed) >= 0
    ON CONFLICT (run_id, step_id) DO NOTHING
    RETURNING 1
  )
  SELECT i.idx,
         -- Held: the run is there at the version expected but was not locked, or the fence's job
         -- is there as the fence says but was not locked.
         (i.run_id NOT IN (SELECT run.id FROM run) AND EXISTS (SELECT 1 FROM runs WHERE runs.id = i.run_id AND runs.version = i.version))
           OR (i.idx IN (SELECT locked.idx FROM locked) AND i.idx NOT IN (SELECT job.idx FROM job) AND EXISTS (
             SELECT 1 FROM jobs WHERE jobs.id = i.job_id
               AND jobs.id = ANY ((SELECT array_agg(value::bigint) FROM jsonb_array_elements_text(p_jobs))::bigint[])
               AND CASE WHEN i.unclaimed THEN jobs.run_at <= now() AND (jobs.locked_until IS NULL OR jobs.locked_until < now()) ELSE jobs.locked_by = i.owner END)),
         b.version,
         (SELECT coalesce(json_agg(q ORDER BY q.id), '[]'::json) FROM queued q WHERE q.run_id = i.run_id),
         (SELECT coalesce(json_agg(d.id), '[]'::json) FROM (SELECT done.id FROM done WHERE done.idx = i.idx UNION ALL SELECT dropped.id FROM dropped WHERE dropped.run_id = i.run_id) d)
  FROM input i LEFT JOIN bumped b ON b.id = i.run_id
  ORDER BY i.idx;
END
$changes$;

-- Which version of this file was last applied (a hash of its text): an executor starting
-- against a current schema runs no DDL at all, so it never takes table locks that live
-- executors' transactions would wait on.
CREATE TABLE IF NOT EXISTS stepwise_schema (
  hash        text PRIMARY KEY,
  applied_at  timestamptz NOT NULL DEFAULT now()
);
