-- Upstream's tables that runtara-core never reads or writes, and an index no
-- query uses (the unique (instance_id, checkpoint_id) index serves retry rows).
DROP TABLE schedules;
DROP TABLE containers;
DROP INDEX idx_checkpoints_retry_attempts;
