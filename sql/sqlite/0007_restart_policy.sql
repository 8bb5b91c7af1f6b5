-- The restart policy counts failures, not launches: a launch keeps the failed
-- attempts in a row that saved no new checkpoint (failures), the checkpoint its
-- current attempt resumed from (to tell progress), and when its process started.
-- max_attempts becomes max_failures, its meaning now. The event_type check is
-- rebuilt to admit 'retried'; the events are kept.
ALTER TABLE instance_launches RENAME COLUMN max_attempts TO max_failures;
ALTER TABLE instance_launches ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instance_launches ADD COLUMN resumed_from TEXT;
ALTER TABLE instance_launches ADD COLUMN launched_at TEXT;

CREATE TABLE instance_events_v7 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id   TEXT NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    event_type    TEXT NOT NULL
        CHECK (event_type IN ('started', 'heartbeat', 'completed', 'failed', 'suspended',
                              'custom', 'launched', 'exited', 'retried')),
    checkpoint_id TEXT,
    payload       BLOB,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    subtype       TEXT
);
INSERT INTO instance_events_v7 (id, instance_id, event_type, checkpoint_id, payload, created_at, subtype)
SELECT id, instance_id, event_type, checkpoint_id, payload, created_at, subtype FROM instance_events;
DROP TABLE instance_events;
ALTER TABLE instance_events_v7 RENAME TO instance_events;
CREATE INDEX idx_instance_events_instance ON instance_events (instance_id, id);
CREATE INDEX idx_instance_events_created ON instance_events (created_at);
CREATE INDEX idx_instance_events_subtype ON instance_events (instance_id, subtype)
    WHERE subtype IS NOT NULL;
