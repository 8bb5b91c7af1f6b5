-- A fork (`runtara-core fork`) is a new instance that runs again from a copy of
-- another's checkpoints: its launch names the instance and the checkpoint it
-- was forked from (both NULL for every other launch).
ALTER TABLE instance_launches ADD COLUMN origin_instance TEXT;
ALTER TABLE instance_launches ADD COLUMN origin_checkpoint TEXT;
