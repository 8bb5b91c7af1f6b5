-- The restart policy counts failures, not launches: a launch keeps the failed
-- attempts in a row that saved no new checkpoint (failures), the checkpoint its
-- current attempt resumed from (to tell progress), and when its process started.
-- max_attempts becomes max_failures, its meaning now. Operators' retries are
-- recorded as events.
ALTER TABLE instance_launches RENAME COLUMN max_attempts TO max_failures;
ALTER TABLE instance_launches ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instance_launches ADD COLUMN resumed_from TEXT;
ALTER TABLE instance_launches ADD COLUMN launched_at TIMESTAMPTZ;

ALTER TYPE instance_event_type ADD VALUE IF NOT EXISTS 'retried';
