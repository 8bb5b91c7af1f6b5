-- Running instances: every registration gets a number (the newest one wins,
-- so that a superseded process can be refused), a launch specification for
-- the instances started with `runtara-core start`, and the events the
-- launcher records (launched, exited). The event_type check is rebuilt to
-- admit them; the events are kept.
ALTER TABLE instances ADD COLUMN registration INTEGER NOT NULL DEFAULT 0;

CREATE TABLE instance_launches (
    instance_id    TEXT PRIMARY KEY NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    spec           TEXT NOT NULL,
    input          BLOB,
    max_attempts   INTEGER NOT NULL,
    attempt        INTEGER NOT NULL DEFAULT 0,
    next_launch_at TEXT,
    claimed_by     TEXT,
    claimed_until  TEXT,
    pid            INTEGER,
    pid_started    INTEGER,
    host           TEXT,
    registration   INTEGER,
    stop_deadline  TEXT,
    last_exit      TEXT
);

CREATE INDEX idx_instance_launches_due ON instance_launches (next_launch_at)
    WHERE next_launch_at IS NOT NULL;
CREATE INDEX idx_instance_launches_claimed ON instance_launches (claimed_by, claimed_until);

CREATE TABLE instance_events_v5 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id   TEXT NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    event_type    TEXT NOT NULL
        CHECK (event_type IN ('started', 'heartbeat', 'completed', 'failed', 'suspended',
                              'custom', 'launched', 'exited')),
    checkpoint_id TEXT,
    payload       BLOB,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    subtype       TEXT
);
INSERT INTO instance_events_v5 (id, instance_id, event_type, checkpoint_id, payload, created_at, subtype)
SELECT id, instance_id, event_type, checkpoint_id, payload, created_at, subtype FROM instance_events;
DROP TABLE instance_events;
ALTER TABLE instance_events_v5 RENAME TO instance_events;
CREATE INDEX idx_instance_events_instance ON instance_events (instance_id, id);
CREATE INDEX idx_instance_events_created ON instance_events (created_at);
CREATE INDEX idx_instance_events_subtype ON instance_events (instance_id, subtype)
    WHERE subtype IS NOT NULL;
