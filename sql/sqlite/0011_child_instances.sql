-- A child instance (started by a workflow with the SDK's start_child) names
-- its parent and what a cancel of the parent does to it: 'cancel' (stop it
-- too) or 'abandon' (leave it running). Both NULL for every other launch.
ALTER TABLE instance_launches ADD COLUMN parent_instance TEXT;
ALTER TABLE instance_launches ADD COLUMN on_parent_cancel TEXT;
CREATE INDEX idx_instance_launches_parent ON instance_launches (parent_instance);
