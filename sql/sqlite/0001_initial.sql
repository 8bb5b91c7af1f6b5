-- The upstream v1.4.1 SQLite schema (tables, columns and indexes keep their
-- names so that tools written for it can read ours), plus:
--   instances.last_activity_at   updated by every request of the instance
--   checkpoints.is_retry_attempt, attempt_number, error_message   retry rows
-- Times are UTC text 'YYYY-MM-DD HH:MM:SS.ffffff', which sorts in time order.

CREATE TABLE instances (
    instance_id        TEXT PRIMARY KEY NOT NULL CHECK (length(instance_id) > 0),
    tenant_id          TEXT NOT NULL,
    definition_version INTEGER NOT NULL DEFAULT 1,
    status             TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'suspended', 'completed', 'failed', 'cancelled')),
    checkpoint_id      TEXT,
    attempt            INTEGER NOT NULL DEFAULT 1,
    max_attempts       INTEGER NOT NULL DEFAULT 3,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    started_at         TEXT,
    finished_at        TEXT,
    output             BLOB,
    error              TEXT,
    sleep_until        TEXT,
    memory_peak_bytes  INTEGER,
    cpu_usage_usec     INTEGER,
    stderr             TEXT,
    input              BLOB,
    last_activity_at   TEXT,
    CONSTRAINT valid_attempt CHECK (attempt >= 1 AND attempt <= max_attempts)
);

CREATE INDEX idx_instances_tenant ON instances (tenant_id);
CREATE INDEX idx_instances_status ON instances (status);
CREATE INDEX idx_instances_created ON instances (created_at);
CREATE INDEX idx_instances_sleep_until ON instances (sleep_until)
    WHERE sleep_until IS NOT NULL AND status = 'suspended';
CREATE INDEX idx_instances_activity ON instances (status, last_activity_at);

CREATE TABLE checkpoints (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id      TEXT NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    checkpoint_id    TEXT NOT NULL,
    state            BLOB NOT NULL,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    is_retry_attempt INTEGER NOT NULL DEFAULT 0,
    attempt_number   INTEGER,
    error_message    TEXT,
    UNIQUE (instance_id, checkpoint_id)
);

CREATE INDEX idx_checkpoints_instance ON checkpoints (instance_id);
CREATE INDEX idx_checkpoints_instance_latest ON checkpoints (instance_id, created_at DESC);

CREATE TABLE instance_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id   TEXT NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    event_type    TEXT NOT NULL
        CHECK (event_type IN ('started', 'heartbeat', 'completed', 'failed', 'suspended', 'custom')),
    checkpoint_id TEXT,
    payload       BLOB,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    subtype       TEXT
);

CREATE INDEX idx_instance_events_instance ON instance_events (instance_id, id);
CREATE INDEX idx_instance_events_created ON instance_events (created_at);
CREATE INDEX idx_instance_events_subtype ON instance_events (instance_id, subtype)
    WHERE subtype IS NOT NULL;

CREATE TABLE pending_signals (
    instance_id     TEXT PRIMARY KEY NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    signal_type     TEXT NOT NULL CHECK (signal_type IN ('cancel', 'pause', 'resume')),
    payload         BLOB,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    acknowledged_at TEXT
);

CREATE TABLE pending_custom_signals (
    instance_id   TEXT NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    checkpoint_id TEXT NOT NULL,
    payload       BLOB,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (instance_id, checkpoint_id)
);
