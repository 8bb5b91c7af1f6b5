-- Running instances: every registration gets a number (the newest one wins,
-- so that a superseded process can be refused), a launch specification for
-- the instances started with `runtara-core start`, and the events the
-- launcher records (launched, exited).
ALTER TABLE instances ADD COLUMN registration BIGINT NOT NULL DEFAULT 0;

CREATE TABLE instance_launches (
    instance_id    TEXT PRIMARY KEY REFERENCES instances (instance_id) ON DELETE CASCADE,
    spec           TEXT NOT NULL,
    input          BYTEA,
    max_attempts   INTEGER NOT NULL,
    attempt        INTEGER NOT NULL DEFAULT 0,
    next_launch_at TIMESTAMPTZ,
    claimed_by     TEXT,
    claimed_until  TIMESTAMPTZ,
    pid            INTEGER,
    pid_started    BIGINT,
    host           TEXT,
    registration   BIGINT,
    stop_deadline  TIMESTAMPTZ,
    last_exit      TEXT
);

CREATE INDEX idx_instance_launches_due ON instance_launches (next_launch_at)
    WHERE next_launch_at IS NOT NULL;
CREATE INDEX idx_instance_launches_claimed ON instance_launches (claimed_by, claimed_until);

ALTER TYPE instance_event_type ADD VALUE IF NOT EXISTS 'launched';
ALTER TYPE instance_event_type ADD VALUE IF NOT EXISTS 'exited';
