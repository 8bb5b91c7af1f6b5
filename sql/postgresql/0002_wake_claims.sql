-- Wake scheduling: a claim keeps other schedulers off an instance while one
-- relaunches it, and defers the next try after a failed launch.
ALTER TABLE instances ADD COLUMN wake_claimed_until TIMESTAMPTZ;

CREATE INDEX idx_instances_finished ON instances (finished_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
