-- The instance list reads each page from an index in its order (newest
-- created_at first, ties by instance_id), starting at the cursor of the page
-- before: one such index for the whole list and one per filter, each with
-- the order after its filter column. They replace the single-column indexes
-- of the same names, which are their prefixes.
DROP INDEX idx_instances_created;
CREATE INDEX idx_instances_created ON instances (created_at DESC, instance_id);
DROP INDEX idx_instances_tenant;
CREATE INDEX idx_instances_tenant ON instances (tenant_id, created_at DESC, instance_id);
DROP INDEX idx_instances_status;
CREATE INDEX idx_instances_status ON instances (status, created_at DESC, instance_id);
