-- Indexes that cost a page write per request and serve no query better than
-- another index: checkpoints(instance_id) is a prefix of the unique
-- (instance_id, checkpoint_id) index, and (status, last_activity_at) changed on
-- every request while the stale check reads few rows through the status index.
DROP INDEX idx_checkpoints_instance;
DROP INDEX idx_instances_activity;
