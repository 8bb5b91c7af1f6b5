-- The named queries of the PostgreSQL driver (see runtara/storage/queries.py).
-- Parameters are psycopg's %(name)s style, and enum parameters are cast
-- explicitly. Results are read in binary (bytea arrives as bytes, not hex), so
-- enum columns are read as text.

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

-- name: applied_migrations
SELECT version, name, checksum FROM runtara_migrations ORDER BY version

-- name: record_migration
INSERT INTO runtara_migrations (version, name, checksum)
VALUES (%(version)s, %(name)s, %(checksum)s)

-- name: migrations_table_exists
SELECT (to_regclass('runtara_migrations') IS NOT NULL)::int

-- name: probe_write
-- A row lock, which a read-only transaction (a standby, or
-- default_transaction_read_only) refuses at once; the caller rolls back.
SELECT version FROM runtara_migrations ORDER BY version LIMIT 1 FOR KEY SHARE

-- === instances =================================================================

-- name: create_instance
INSERT INTO instances (instance_id, tenant_id, status, created_at)
VALUES (%(instance_id)s, %(tenant_id)s, 'pending', %(now)s)
ON CONFLICT (instance_id) DO NOTHING

-- name: get_instance
SELECT instance_id, tenant_id, status::text, created_at, checkpoint_id, started_at, finished_at,
       output, error, sleep_until, last_activity_at, wake_claimed_until, registration
FROM instances WHERE instance_id = %(instance_id)s

-- name: get_instance_for_update
-- The row lock serializes the operations on one instance across connections
-- and processes until the transaction ends.
SELECT instance_id, tenant_id, status::text, created_at, checkpoint_id, started_at, finished_at,
       output, error, sleep_until, last_activity_at, wake_claimed_until, registration
FROM instances WHERE instance_id = %(instance_id)s FOR UPDATE

-- name: update_instance
UPDATE instances SET {assign} WHERE instance_id = %(instance_id)s

-- name: assign.status
status = %(status)s::instance_status

-- name: assign.checkpoint_id
checkpoint_id = %(checkpoint_id)s

-- name: assign.started_at
started_at = %(started_at)s

-- name: assign.finished_at
finished_at = %(finished_at)s

-- name: assign.output
output = %(output)s

-- name: assign.error
error = %(error)s

-- name: assign.sleep_until
sleep_until = %(sleep_until)s

-- name: assign.last_activity_at
last_activity_at = %(last_activity_at)s

-- name: assign.wake_claimed_until
wake_claimed_until = %(wake_claimed_until)s

-- name: assign.registration
registration = %(registration)s

-- name: list_instances
SELECT instance_id, tenant_id, status::text, created_at, checkpoint_id, started_at, finished_at,
       output, error, sleep_until, last_activity_at, wake_claimed_until, registration
FROM instances WHERE {instance_filter}
ORDER BY created_at DESC, instance_id LIMIT %(limit)s OFFSET %(offset)s

-- name: count_instances
SELECT count(*) FROM instances WHERE {instance_filter}

-- name: instance_filter.tenant_id
tenant_id = %(tenant_id)s

-- name: instance_filter.status
status = %(status)s::instance_status

-- name: select_due_sleepers
-- Sleepers nothing launches: the launcher's --wake-command gives them a launch.
SELECT instance_id, tenant_id, status::text, created_at, checkpoint_id, started_at, finished_at,
       output, error, sleep_until, last_activity_at, wake_claimed_until, registration
FROM instances
WHERE status = 'suspended' AND sleep_until IS NOT NULL AND sleep_until <= %(due_before)s
  AND instance_id NOT IN (SELECT instance_id FROM instance_launches)
ORDER BY sleep_until, instance_id LIMIT %(limit)s

-- name: list_stale_instances
SELECT instance_id, tenant_id, status::text, created_at, checkpoint_id, started_at, finished_at,
       output, error, sleep_until, last_activity_at, wake_claimed_until, registration
FROM instances
WHERE status = 'running' AND coalesce(last_activity_at, started_at, created_at) < %(cutoff)s
ORDER BY coalesce(last_activity_at, started_at, created_at), instance_id LIMIT %(limit)s

-- name: list_finished_before
SELECT instance_id FROM instances
WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < %(cutoff)s
ORDER BY finished_at, instance_id LIMIT %(limit)s

-- name: delete_instance
-- Foreign keys cascade to checkpoints, events and signals.
DELETE FROM instances WHERE instance_id = %(instance_id)s

-- === checkpoints ===============================================================

-- name: insert_checkpoint
INSERT INTO checkpoints (instance_id, checkpoint_id, state, created_at)
VALUES (%(instance_id)s, %(checkpoint_id)s, %(state)s, %(now)s)
ON CONFLICT (instance_id, checkpoint_id) DO NOTHING

-- name: get_checkpoint
SELECT state, created_at FROM checkpoints
WHERE instance_id = %(instance_id)s AND checkpoint_id = %(checkpoint_id)s

-- name: save_retry_attempt
INSERT INTO checkpoints
    (instance_id, checkpoint_id, state, created_at, is_retry_attempt, attempt_number, error_message)
VALUES (%(instance_id)s, %(checkpoint_id)s, %(state)s, %(now)s, true, %(attempt)s, %(error_message)s)
ON CONFLICT (instance_id, checkpoint_id) DO UPDATE SET
    state = excluded.state,
    created_at = excluded.created_at,
    attempt_number = excluded.attempt_number,
    error_message = excluded.error_message

-- name: list_checkpoints
SELECT checkpoint_id, length(state), created_at FROM checkpoints
WHERE instance_id = %(instance_id)s AND {checkpoint_filter}
ORDER BY created_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s

-- name: count_checkpoints
SELECT count(*) FROM checkpoints WHERE instance_id = %(instance_id)s AND {checkpoint_filter}

-- name: checkpoint_filter.checkpoint_id
checkpoint_id = %(checkpoint_id)s

-- name: checkpoint_filter.created_after
created_at >= %(created_after)s

-- name: checkpoint_filter.created_before
created_at < %(created_before)s

-- === events ====================================================================

-- name: insert_event
INSERT INTO instance_events (instance_id, event_type, checkpoint_id, payload, created_at, subtype)
VALUES (%(instance_id)s, %(event_type)s::instance_event_type, %(checkpoint_id)s, %(payload)s,
        %(created_at)s, %(subtype)s)
RETURNING id

-- name: list_events
SELECT id, instance_id, event_type::text, checkpoint_id, payload, created_at, subtype
FROM instance_events WHERE instance_id = %(instance_id)s AND {event_filter}
ORDER BY created_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s

-- name: count_events
SELECT count(*) FROM instance_events WHERE instance_id = %(instance_id)s AND {event_filter}

-- name: event_filter.event_type
event_type = %(event_type)s::instance_event_type

-- name: event_filter.subtype
subtype = %(subtype)s

-- name: event_filter.created_after
created_at >= %(created_after)s

-- name: event_filter.created_before
created_at < %(created_before)s

-- name: event_filter.payload_contains
-- strpos on lower() is an exact, case-insensitive substring test with no LIKE
-- wildcards to escape; runtara_payload_text is NULL for a non-UTF-8 payload.
strpos(lower(runtara_payload_text(payload)), lower(%(payload_contains)s)) > 0

-- === signals ===================================================================

-- name: put_signal
INSERT INTO pending_signals (instance_id, signal_type, payload, created_at)
VALUES (%(instance_id)s, %(signal_type)s::signal_type, %(payload)s, %(now)s)
ON CONFLICT (instance_id) DO UPDATE SET
    signal_type = excluded.signal_type,
    payload = excluded.payload,
    created_at = excluded.created_at,
    acknowledged_at = NULL

-- name: get_pending_signal
SELECT signal_type::text, payload, created_at FROM pending_signals
WHERE instance_id = %(instance_id)s AND acknowledged_at IS NULL

-- name: acknowledge_signal
UPDATE pending_signals SET acknowledged_at = %(now)s
WHERE instance_id = %(instance_id)s AND signal_type = %(signal_type)s::signal_type
  AND acknowledged_at IS NULL

-- name: put_custom_signal
INSERT INTO pending_checkpoint_signals (instance_id, checkpoint_id, payload, created_at)
VALUES (%(instance_id)s, %(checkpoint_id)s, %(payload)s, %(now)s)
ON CONFLICT (instance_id, checkpoint_id) DO UPDATE SET
    payload = excluded.payload,
    created_at = excluded.created_at

-- name: take_custom_signal
DELETE FROM pending_checkpoint_signals
WHERE instance_id = %(instance_id)s AND checkpoint_id = %(checkpoint_id)s
RETURNING payload, created_at

-- name: list_custom_signals
SELECT checkpoint_id, payload, created_at FROM pending_checkpoint_signals
WHERE instance_id = %(instance_id)s ORDER BY created_at, checkpoint_id

-- === launches ==================================================================
-- The launch protocol (runtara/storage/launches.py) moves a launch from state to
-- state with update_launch_held: one compare-and-set on who holds it.

-- name: insert_launch
INSERT INTO instance_launches (instance_id, spec, input, max_failures, attempt, next_launch_at,
                               queue, concurrency_key, priority, origin_instance,
                               origin_checkpoint, parent_instance, on_parent_cancel)
VALUES (%(instance_id)s, %(spec)s, %(input)s, %(max_failures)s, %(attempt)s, %(next_launch_at)s,
        %(queue)s, %(concurrency_key)s, %(priority)s, %(origin_instance)s,
        %(origin_checkpoint)s, %(parent_instance)s, %(on_parent_cancel)s)

-- name: get_launch
SELECT instance_id, spec, input, max_failures, attempt, failures, resumed_from, launched_at,
       next_launch_at, claimed_by, claimed_until, pid, pid_started, host, registration,
       stop_deadline, last_exit, queue, concurrency_key, priority, origin_instance,
       origin_checkpoint, parent_instance, on_parent_cancel
FROM instance_launches WHERE instance_id = %(instance_id)s

-- name: update_launch
UPDATE instance_launches SET {launch_assign} WHERE instance_id = %(instance_id)s

-- name: update_launch_held
UPDATE instance_launches SET {launch_assign}
WHERE instance_id = %(instance_id)s AND claimed_by IS NOT DISTINCT FROM %(held_by)s
  AND attempt = %(held_attempt)s

-- name: launch_assign.spec
spec = %(spec)s

-- name: launch_assign.input
input = %(input)s

-- name: launch_assign.attempt
attempt = %(attempt)s

-- name: launch_assign.failures
failures = %(failures)s

-- name: launch_assign.resumed_from
resumed_from = %(resumed_from)s

-- name: launch_assign.launched_at
launched_at = %(launched_at)s

-- name: launch_assign.next_launch_at
next_launch_at = %(next_launch_at)s

-- name: launch_assign.claimed_by
claimed_by = %(claimed_by)s

-- name: launch_assign.claimed_until
claimed_until = %(claimed_until)s

-- name: launch_assign.pid
pid = %(pid)s

-- name: launch_assign.pid_started
pid_started = %(pid_started)s

-- name: launch_assign.host
host = %(host)s

-- name: launch_assign.registration
registration = %(registration)s

-- name: launch_assign.stop_deadline
stop_deadline = %(stop_deadline)s

-- name: launch_assign.last_exit
last_exit = %(last_exit)s

-- name: select_due_launches
-- Locks the instances' rows, skipping those another transaction holds:
-- instance rows are locked before launch rows everywhere. Leaves out launches
-- whose queue is paused or at a limit; the highest priority first, then one of
-- each concurrency key in turn (round-robin), then the earliest due.
SELECT c.instance_id FROM (
    SELECT l.instance_id, l.priority, l.next_launch_at,
           ROW_NUMBER() OVER (PARTITION BY l.queue, l.priority, l.concurrency_key
                              ORDER BY l.next_launch_at, l.instance_id) AS turn
    FROM instance_launches l LEFT JOIN queues q ON q.name = l.queue
    WHERE l.next_launch_at IS NOT NULL AND l.next_launch_at <= %(now)s
      AND (l.claimed_until IS NULL OR l.claimed_until <= %(now)s)
      AND (q.name IS NULL OR (
            NOT q.paused
        AND (q.concurrency IS NULL OR q.concurrency > (
                SELECT COUNT(*) FROM instance_launches r
                WHERE r.queue = l.queue AND r.claimed_by IS NOT NULL))
        AND (q.per_key IS NULL OR l.concurrency_key IS NULL OR q.per_key > (
                SELECT COUNT(*) FROM instance_launches r
                WHERE r.queue = l.queue AND r.concurrency_key = l.concurrency_key
                  AND r.claimed_by IS NOT NULL))
        AND (q.rate_limit IS NULL OR q.rate_limit > (
                SELECT COUNT(*) FROM queue_starts s
                WHERE s.queue = l.queue AND s.expires_at > %(now)s))))
) c JOIN instances i ON i.instance_id = c.instance_id
ORDER BY c.priority DESC, c.turn, c.next_launch_at, c.instance_id LIMIT %(limit)s
FOR UPDATE OF i SKIP LOCKED

-- name: list_lapsed_launches
SELECT l.instance_id, l.spec, l.input, l.max_failures, l.attempt, l.failures, l.resumed_from,
       l.launched_at, l.next_launch_at, l.claimed_by, l.claimed_until, l.pid, l.pid_started,
       l.host, l.registration, l.stop_deadline, l.last_exit, l.queue, l.concurrency_key,
       l.priority, l.origin_instance, l.origin_checkpoint, l.parent_instance,
       l.on_parent_cancel
FROM instance_launches l JOIN instances i ON i.instance_id = l.instance_id
WHERE (l.claimed_by IS NOT NULL AND l.claimed_until <= %(now)s)
   OR (l.claimed_by IS NULL AND l.next_launch_at IS NULL
       AND (i.status IN ('pending', 'running')
            OR (i.status = 'suspended' AND i.sleep_until <= %(due_before)s)))
ORDER BY l.instance_id LIMIT %(limit)s

-- name: list_claimed_launches
SELECT instance_id, spec, input, max_failures, attempt, failures, resumed_from, launched_at,
       next_launch_at, claimed_by, claimed_until, pid, pid_started, host, registration,
       stop_deadline, last_exit, queue, concurrency_key, priority, origin_instance,
       origin_checkpoint, parent_instance, on_parent_cancel
FROM instance_launches WHERE claimed_by = %(claimed_by)s
ORDER BY instance_id LIMIT %(limit)s

-- === operations ================================================================
-- PostgreSQL only: the instance protocol's operations, each one call of its
-- server-side function (migration 0006), sent in autocommit mode: the call's
-- statement is the whole transaction.

-- name: call_register_instance
SELECT runtara_register_instance(%(instance_id)s, %(tenant_id)s, %(checkpoint_id)s, %(now)s,
                                 %(registration)s)

-- name: call_checkpoint
SELECT * FROM runtara_checkpoint(%(instance_id)s, %(checkpoint_id)s, %(state)s, %(now)s,
                                 %(registration)s)

-- name: call_get_checkpoint
SELECT runtara_get_checkpoint(%(instance_id)s, %(checkpoint_id)s, %(now)s, %(registration)s)

-- name: call_begin_sleep
SELECT runtara_begin_sleep(%(instance_id)s, %(duration_us)s, %(checkpoint_id)s, %(state)s,
                           %(now)s, %(registration)s)

-- name: call_finish_sleep
SELECT runtara_finish_sleep(%(instance_id)s, %(sleep_until)s, %(now)s)

-- name: call_record_event
SELECT runtara_record_event(%(instance_id)s, %(kind)s, %(payload)s, %(error)s, %(now)s,
                            %(checkpoint_id)s, %(subtype)s, %(registration)s)

-- name: call_instance_status
SELECT * FROM runtara_instance_status(%(instance_id)s, %(now)s)

-- name: call_poll_signals
SELECT * FROM runtara_poll_signals(%(instance_id)s, %(checkpoint_id)s, %(now)s,
                                   %(registration)s)

-- name: call_acknowledge_signal
SELECT runtara_acknowledge_signal(%(instance_id)s, %(signal_type)s, %(acknowledged)s, %(now)s,
                                  %(registration)s)

-- name: call_record_retry
SELECT runtara_record_retry(%(instance_id)s, %(checkpoint_id)s, %(attempt)s, %(error_message)s,
                            %(now)s, %(registration)s)

-- name: list_children
SELECT instance_id, spec, input, max_failures, attempt, failures, resumed_from, launched_at,
       next_launch_at, claimed_by, claimed_until, pid, pid_started, host, registration,
       stop_deadline, last_exit, queue, concurrency_key, priority, origin_instance,
       origin_checkpoint, parent_instance, on_parent_cancel
FROM instance_launches WHERE parent_instance = %(parent_instance)s
ORDER BY instance_id

-- === queues ====================================================================

-- name: get_queue
SELECT name, concurrency, per_key, rate_limit, rate_period, paused FROM queues WHERE name = %(name)s

-- name: get_queue_for_update
SELECT name, concurrency, per_key, rate_limit, rate_period, paused FROM queues WHERE name = %(name)s
FOR UPDATE

-- name: list_queues
SELECT name, concurrency, per_key, rate_limit, rate_period, paused FROM queues ORDER BY name

-- name: lock_queues
-- Every claim decided by a queue's limits is taken with the queue rows locked,
-- in name order: launchers of several servers decide one at a time.
SELECT name FROM queues ORDER BY name
FOR UPDATE

-- name: put_queue
INSERT INTO queues (name, concurrency, per_key, rate_limit, rate_period, paused)
VALUES (%(name)s, %(concurrency)s, %(per_key)s, %(rate_limit)s, %(rate_period)s, %(paused)s)
ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
    per_key = excluded.per_key, rate_limit = excluded.rate_limit,
    rate_period = excluded.rate_period, paused = excluded.paused

-- name: count_queue_claimed
SELECT COUNT(*) FROM instance_launches WHERE queue = %(queue)s AND claimed_by IS NOT NULL

-- name: count_key_claimed
SELECT COUNT(*) FROM instance_launches
WHERE queue = %(queue)s AND concurrency_key = %(concurrency_key)s AND claimed_by IS NOT NULL

-- name: insert_queue_start
INSERT INTO queue_starts (queue, expires_at) VALUES (%(queue)s, %(expires_at)s)

-- name: count_queue_starts
SELECT COUNT(*) FROM queue_starts WHERE queue = %(queue)s AND expires_at > %(now)s

-- name: delete_expired_queue_starts
DELETE FROM queue_starts WHERE queue = %(queue)s AND expires_at <= %(now)s

-- name: queue_figures
-- Per queue: launches claimed, due now, and due later (a delay, a back-off).
SELECT queue,
       SUM(CASE WHEN claimed_by IS NOT NULL THEN 1 ELSE 0 END),
       SUM(CASE WHEN claimed_by IS NULL AND next_launch_at <= %(now)s THEN 1 ELSE 0 END),
       SUM(CASE WHEN claimed_by IS NULL AND next_launch_at > %(now)s THEN 1 ELSE 0 END)
FROM instance_launches
WHERE claimed_by IS NOT NULL OR next_launch_at IS NOT NULL
GROUP BY queue ORDER BY queue

-- === schedules =================================================================

-- name: get_schedule
SELECT name, cron, every, timezone, overlap, catch_up, tenant_id, spec, input, created_at,
       next_tick_at, paused, last_tick_at, last_instance_id, ticks, skipped
FROM schedules WHERE name = %(name)s

-- name: get_schedule_for_update
SELECT name, cron, every, timezone, overlap, catch_up, tenant_id, spec, input, created_at,
       next_tick_at, paused, last_tick_at, last_instance_id, ticks, skipped
FROM schedules WHERE name = %(name)s
FOR UPDATE

-- name: list_schedules
SELECT name, cron, every, timezone, overlap, catch_up, tenant_id, spec, input, created_at,
       next_tick_at, paused, last_tick_at, last_instance_id, ticks, skipped
FROM schedules ORDER BY name

-- name: select_due_schedules
SELECT name FROM schedules WHERE NOT paused AND next_tick_at <= %(now)s
ORDER BY next_tick_at, name LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: put_schedule
INSERT INTO schedules (name, cron, every, timezone, overlap, catch_up, tenant_id, spec, input,
                       created_at, next_tick_at, paused, last_tick_at, last_instance_id, ticks,
                       skipped)
VALUES (%(name)s, %(cron)s, %(every)s, %(timezone)s, %(overlap)s, %(catch_up)s,
        %(tenant_id)s, %(spec)s, %(input)s, %(created_at)s, %(next_tick_at)s, %(paused)s,
        %(last_tick_at)s, %(last_instance_id)s, %(ticks)s, %(skipped)s)
ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, every = excluded.every,
    timezone = excluded.timezone, overlap = excluded.overlap, catch_up = excluded.catch_up,
    tenant_id = excluded.tenant_id, spec = excluded.spec, input = excluded.input,
    created_at = excluded.created_at, next_tick_at = excluded.next_tick_at,
    paused = excluded.paused, last_tick_at = excluded.last_tick_at,
    last_instance_id = excluded.last_instance_id, ticks = excluded.ticks,
    skipped = excluded.skipped

-- name: delete_schedule
DELETE FROM schedules WHERE name = %(name)s
