-- SQLite's own named queries: those that differ from ../queries.sql, whose
-- entries of the same name they replace. Times are UTC text
-- 'YYYY-MM-DD HH:MM:SS.ffffff', which sorts in time order.

-- === schema ====================================================================

-- name: lock_schema
-- Begins the transaction that changes or probes the schema: IMMEDIATE takes
-- the write lock before anything is read, so concurrent starts apply each
-- migration once.
BEGIN IMMEDIATE

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS runtara_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
)

-- name: record_migration
INSERT INTO runtara_migrations (version, name, checksum, applied_at)
VALUES (:version, :name, :checksum, strftime('%Y-%m-%d %H:%M:%f', 'now'))

-- name: migrations_table_exists
SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'runtara_migrations'

-- name: probe_write
-- A write that the caller rolls back: it fails at once when the file cannot be
-- written (BEGIN IMMEDIATE alone succeeds on a read-only file in WAL mode).
UPDATE runtara_migrations SET version = version
WHERE version = (SELECT min(version) FROM runtara_migrations)
RETURNING version

-- === the rest ==================================================================

-- name: event_filter.payload_contains
-- instr on lower() is an exact, case-insensitive (ASCII) substring test with
-- no LIKE wildcards to escape.
instr(lower(CAST(payload AS TEXT)), lower(:payload_contains)) > 0

-- name: update_launch_held
-- IS rather than IS NOT DISTINCT FROM, which needs SQLite 3.39.
UPDATE instance_launches SET {launch_assign}
WHERE instance_id = :instance_id AND claimed_by IS :held_by AND attempt = :held_attempt

-- name: select_due_schedules
-- paused = 0 is the condition of the partial index idx_schedules_due.
SELECT name FROM schedules WHERE paused = 0 AND next_tick_at <= :now
ORDER BY next_tick_at, name LIMIT :limit

-- name: select_due_sleepers
-- Sleepers nothing launches: the launcher's --wake-command gives them a launch.
-- INDEXED BY: without statistics SQLite would read every suspended instance
-- through the status index rather than the due ones through this one.
SELECT {instance_columns} FROM instances INDEXED BY idx_instances_sleep_until
WHERE status = 'suspended' AND sleep_until IS NOT NULL AND sleep_until <= :due_before
  AND NOT EXISTS (SELECT 1 FROM instance_launches l WHERE l.instance_id = instances.instance_id)
ORDER BY sleep_until, instance_id LIMIT :limit

-- name: list_finished_before
-- INDEXED BY: read in finished_at order, as far as the limit, rather than every
-- finished instance through the status index and then sorted.
SELECT instance_id FROM instances INDEXED BY idx_instances_finished
WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < :cutoff
ORDER BY finished_at, instance_id LIMIT :limit

-- name: list_lapsed_launches
-- INDEXED BY: without statistics SQLite reads the claims in the primary key's
-- order (for the ORDER BY) and the sleepers through the status index (all of
-- them); these indexes read only the claims and the due sleepers.
SELECT {launch_columns_of_l} FROM instance_launches l INDEXED BY idx_instance_launches_claimed
WHERE l.claimed_by IS NOT NULL AND l.claimed_until <= :now
UNION ALL
SELECT {launch_columns_of_l}
FROM instances i JOIN instance_launches l ON l.instance_id = i.instance_id
WHERE i.status IN ('pending', 'running') AND l.claimed_by IS NULL AND l.next_launch_at IS NULL
UNION ALL
SELECT {launch_columns_of_l} FROM instances i INDEXED BY idx_instances_sleep_until
     JOIN instance_launches l ON l.instance_id = i.instance_id
WHERE i.status = 'suspended' AND i.sleep_until IS NOT NULL AND i.sleep_until <= :due_before
  AND l.claimed_by IS NULL AND l.next_launch_at IS NULL
ORDER BY 1 LIMIT :limit

-- name: queue_figures
-- Per queue: launches claimed, due now, and due later (a delay, a back-off).
-- Two parts, each read through its index (the claims; the launches with a
-- due time), rather than one condition with OR, which reads every launch.
-- INDEXED BY: SQLite would read the second part through the claims' index,
-- where the launches nobody holds include those of every finished instance.
SELECT queue, SUM(claimed), SUM(due), SUM(later) FROM (
    SELECT queue, 1 AS claimed, 0 AS due, 0 AS later
    FROM instance_launches WHERE claimed_by IS NOT NULL
    UNION ALL
    SELECT queue, 0, CASE WHEN next_launch_at <= :now THEN 1 ELSE 0 END,
           CASE WHEN next_launch_at > :now THEN 1 ELSE 0 END
    FROM instance_launches INDEXED BY idx_instance_launches_due
    WHERE next_launch_at IS NOT NULL AND claimed_by IS NULL
) AS counted
GROUP BY queue ORDER BY queue

-- === schedules =================================================================

-- name: delete_finished_before
-- INDEXED BY: as list_finished_before.
DELETE FROM instances
WHERE instance_id IN (
    SELECT instance_id FROM instances INDEXED BY idx_instances_finished
    WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < :cutoff
    ORDER BY finished_at, instance_id LIMIT :limit)
  AND status IN ('completed', 'failed', 'cancelled') AND finished_at < :cutoff
RETURNING instance_id
