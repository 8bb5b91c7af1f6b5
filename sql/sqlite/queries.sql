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
