-- PostgreSQL's own named queries: those that differ from ../queries.sql, whose
-- entries of the same name they replace, and the calls of its server-side
-- functions. Results are read in binary (bytea arrives as bytes, not hex).

-- === schema ====================================================================

-- name: lock_schema
-- Begins the transaction that changes or probes the schema, holding an
-- advisory lock (one per database, "runtara") until it ends, so concurrent
-- starts apply each migration once.
BEGIN;
SELECT pg_advisory_xact_lock(32217264604410465)

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS runtara_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
)

-- name: record_migration
INSERT INTO runtara_migrations (version, name, checksum) VALUES (:version, :name, :checksum)

-- name: migrations_table_exists
SELECT (to_regclass('runtara_migrations') IS NOT NULL)::int

-- name: probe_write
-- A row lock, which a read-only transaction (a standby, or
-- default_transaction_read_only) refuses at once; the caller rolls back.
SELECT version FROM runtara_migrations ORDER BY version LIMIT 1 FOR KEY SHARE

-- === the rest ==================================================================

-- name: event_filter.payload_contains
-- strpos on lower() is an exact, case-insensitive substring test with no LIKE
-- wildcards to escape; runtara_payload_text is NULL for a non-UTF-8 payload.
strpos(lower(runtara_payload_text(payload)), lower(:payload_contains)) > 0

-- === operations ================================================================
-- The instance protocol's operations, each one call of its server-side function
-- (migration 0006), sent in autocommit mode: the call's statement is the whole
-- transaction.

-- name: call_register_instance
SELECT runtara_register_instance(:instance_id, :tenant_id, :checkpoint_id, :now, :registration)

-- name: call_checkpoint
SELECT * FROM runtara_checkpoint(:instance_id, :checkpoint_id, :state, :now, :registration)

-- name: call_get_checkpoint
SELECT runtara_get_checkpoint(:instance_id, :checkpoint_id, :now, :registration)

-- name: call_begin_sleep
SELECT runtara_begin_sleep(:instance_id, :duration_us, :checkpoint_id, :state, :now,
                           :registration)

-- name: call_finish_sleep
SELECT runtara_finish_sleep(:instance_id, :sleep_until, :now)

-- name: call_record_event
SELECT runtara_record_event(:instance_id, :kind, :payload, :error, :now, :checkpoint_id,
                            :subtype, :registration)

-- name: call_instance_status
SELECT * FROM runtara_instance_status(:instance_id, :now)

-- name: call_poll_signals
SELECT * FROM runtara_poll_signals(:instance_id, :checkpoint_id, :now, :registration)

-- name: call_acknowledge_signal
SELECT runtara_acknowledge_signal(:instance_id, :signal_type, :acknowledged, :now,
                                  :registration)

-- name: call_record_retry
SELECT runtara_record_retry(:instance_id, :checkpoint_id, :attempt, :error_message, :now,
                            :registration)

-- name: list_lapsed_launches
-- LATERAL ... LIMIT 1: the launch of each pending or running instance and of
-- each due sleeper is looked up by its key. Joined otherwise, PostgreSQL reads
-- every launch nobody holds, those of all the finished instances, to hash them.
SELECT {launch_columns_of_l} FROM instance_launches l
WHERE l.claimed_by IS NOT NULL AND l.claimed_until <= :now
UNION ALL
SELECT {launch_columns_of_l}
FROM instances i CROSS JOIN LATERAL (
    SELECT * FROM instance_launches o
    WHERE o.instance_id = i.instance_id AND o.claimed_by IS NULL AND o.next_launch_at IS NULL
    LIMIT 1) l
WHERE i.status IN ('pending', 'running')
UNION ALL
SELECT {launch_columns_of_l}
FROM instances i CROSS JOIN LATERAL (
    SELECT * FROM instance_launches o
    WHERE o.instance_id = i.instance_id AND o.claimed_by IS NULL AND o.next_launch_at IS NULL
    LIMIT 1) l
WHERE i.status = 'suspended' AND i.sleep_until IS NOT NULL AND i.sleep_until <= :due_before
ORDER BY 1 LIMIT :limit
