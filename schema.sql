-- Stepwise: the system of record. Applied at every start; every statement is idempotent.
-- Postgres owns the truth: apps, functions, events, runs, steps, waits and the job queue
-- (the queue moves to Redis in a Redis deploy; everything there can be rebuilt from here).

-- An app is one deployed /api/durable endpoint.
CREATE TABLE IF NOT EXISTS apps (
  id          text PRIMARY KEY,
  url         text NOT NULL,
  sdk         text NOT NULL DEFAULT '',
  synced_at   timestamptz NOT NULL DEFAULT now()
);

-- id is the executor's global ID: "<app id>-<function id>".
CREATE TABLE IF NOT EXISTS functions (
  id          text PRIMARY KEY,
  app_id      text NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  local_id    text NOT NULL,
  config      jsonb NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- An event is stored before its sender hears "ok"; a repeated id is ignored (idempotent send).
CREATE TABLE IF NOT EXISTS events (
  id           text PRIMARY KEY,
  name         text NOT NULL,
  data         jsonb NOT NULL,
  ts           bigint NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_name_idx ON events (name, received_at);

CREATE TABLE IF NOT EXISTS runs (
  id              text PRIMARY KEY,
  function_id     text NOT NULL,
  event_id        text NOT NULL,
  status          text NOT NULL,   -- queued | running | sleeping | waiting | completed | failed | cancelled
  attempt         integer NOT NULL DEFAULT 0,
  output          jsonb,
  error           jsonb,
  parent_run_id   text,
  parent_step_id  text,
  started_at      timestamptz NOT NULL DEFAULT now(),
  ended_at        timestamptz
);
-- Bumped by every change of the run's state (each takes the row lock through this column), so a
-- writer that prepared its change from a snapshot can apply it only if nothing moved since.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS runs_event_idx ON runs (event_id);
CREATE INDEX IF NOT EXISTS runs_live_idx ON runs (status) WHERE status NOT IN ('completed', 'failed', 'cancelled');

-- One row per step a run reached, keyed by step ID; position is the order of discovery,
-- used to detect a function whose steps changed under a live run.
CREATE TABLE IF NOT EXISTS steps (
  run_id      text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  id          text NOT NULL,
  name        text NOT NULL,
  kind        text NOT NULL,   -- run | sleep | wait | send | invoke
  position    integer NOT NULL,
  status      text NOT NULL,   -- planned | retrying | sleeping | waiting | invoking | completed | failed | cancelled
  output      jsonb,
  error       jsonb,
  attempts    integer NOT NULL DEFAULT 0,
  wake_at     timestamptz,
  started_at  timestamptz NOT NULL DEFAULT now(),
  ended_at    timestamptz,
  PRIMARY KEY (run_id, id)
);

-- Open matchers against incoming events: a step.waitForEvent (kind 'wait') or a cancelOn
-- (kind 'cancel'). match_value is the trigger's value at match_path, frozen when opened.
CREATE TABLE IF NOT EXISTS matchers (
  run_id       text NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step_id      text NOT NULL,   -- '' for cancel matchers (one per cancelOn entry: 'cancel:<n>')
  kind         text NOT NULL,
  event_name   text NOT NULL,
  match_path   text,
  match_value  jsonb,
  if_expr      text,
  expires_at   timestamptz,
  PRIMARY KEY (run_id, step_id)
);
CREATE INDEX IF NOT EXISTS matchers_event_idx ON matchers (event_name);

-- The Postgres queue: invocations and timers. A job is due at run_at; a claim leases it to
-- one worker until locked_until, and only the lease holder may complete it.
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
CREATE INDEX IF NOT EXISTS jobs_due_idx ON jobs (run_at, id);
CREATE INDEX IF NOT EXISTS jobs_run_idx ON jobs (run_id);

-- Which version of this file was last applied (a hash of its text): an executor starting
-- against a current schema runs no DDL at all, so it never takes table locks that live
-- executors' transactions would wait on.
CREATE TABLE IF NOT EXISTS stepwise_schema (
  hash        text PRIMARY KEY,
  applied_at  timestamptz NOT NULL DEFAULT now()
);
