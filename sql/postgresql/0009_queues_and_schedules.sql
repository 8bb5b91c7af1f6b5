-- Flow control when work starts: every launch belongs to a queue (limits are
-- rows of queues: absent means none), may name a concurrency key, and has a
-- priority. queue_starts remembers each claim of a rate-limited queue until it
-- no longer counts. Schedules start instances at their ticks.
ALTER TABLE instance_launches ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE instance_launches ADD COLUMN concurrency_key TEXT;
ALTER TABLE instance_launches ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;

CREATE INDEX idx_instance_launches_queue_claimed ON instance_launches (queue, concurrency_key)
    WHERE claimed_by IS NOT NULL;

CREATE TABLE queues (
    name         TEXT PRIMARY KEY,
    concurrency  INTEGER,
    per_key      INTEGER,
    rate_limit   INTEGER,
    rate_period  DOUBLE PRECISION,
    paused       BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE queue_starts (
    id         BIGSERIAL PRIMARY KEY,
    queue      TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX idx_queue_starts ON queue_starts (queue, expires_at);

CREATE TABLE schedules (
    name             TEXT PRIMARY KEY,
    cron             TEXT,
    every            DOUBLE PRECISION,
    timezone         TEXT NOT NULL DEFAULT 'UTC',
    overlap          TEXT NOT NULL,
    catch_up         TEXT NOT NULL,
    tenant_id        TEXT NOT NULL,
    spec             TEXT NOT NULL,
    input            BYTEA,
    paused           BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TIMESTAMPTZ NOT NULL,
    next_tick_at     TIMESTAMPTZ NOT NULL,
    last_tick_at     TIMESTAMPTZ,
    last_instance_id TEXT,
    ticks            BIGINT NOT NULL DEFAULT 0,
    skipped          BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX idx_schedules_due ON schedules (next_tick_at) WHERE NOT paused;
