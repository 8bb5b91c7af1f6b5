-- One name and one shape for custom signals in every dialect: PostgreSQL's
-- pending_checkpoint_signals (a surrogate id, at most one untaken signal per
-- instance and checkpoint id). The untaken signals are kept.
CREATE TABLE pending_checkpoint_signals (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id   TEXT NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    checkpoint_id TEXT NOT NULL,
    payload       BLOB,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    UNIQUE (instance_id, checkpoint_id)
);

INSERT INTO pending_checkpoint_signals (instance_id, checkpoint_id, payload, created_at)
SELECT instance_id, checkpoint_id, payload, created_at FROM pending_custom_signals
ORDER BY created_at, instance_id, checkpoint_id;

DROP TABLE pending_custom_signals;
