-- The named queries of the SQL drivers, in every dialect unless the dialect's own
-- <dialect>/queries.sql names it too (see runtara/storage/queries.py).
-- Parameters are written :name; enum columns are read as CAST(... AS TEXT), and
-- PostgreSQL infers an enum parameter's type from its column. A closing row
-- lock (FOR UPDATE ...) is PostgreSQL's: SQLite's write transaction holds the
-- database's only write lock already.

-- === schema ====================================================================

-- name: applied_migrations
SELECT version, name, checksum FROM runtara_migrations ORDER BY version

-- === instances =================================================================

-- name: instance_columns
-- An instance's columns, in the order sqlbase.instance_from_row reads them.
instance_id, tenant_id, CAST(status AS TEXT), created_at, checkpoint_id, started_at,
finished_at, output, error, sleep_until, last_activity_at, wake_claimed_until, registration

-- name: create_instance
INSERT INTO instances (instance_id, tenant_id, status, created_at)
VALUES (:instance_id, :tenant_id, 'pending', :now)
ON CONFLICT (instance_id) DO NOTHING

-- name: get_instance
SELECT {instance_columns} FROM instances WHERE instance_id = :instance_id

-- name: get_instance_for_update
-- The row lock serializes the operations on one instance across connections
-- and processes until the transaction ends.
SELECT {instance_columns} FROM instances WHERE instance_id = :instance_id
FOR UPDATE

-- name: update_instance
UPDATE instances SET {assign} WHERE instance_id = :instance_id

-- name: assign.status
status = :status

-- name: assign.checkpoint_id
checkpoint_id = :checkpoint_id

-- name: assign.started_at
started_at = :started_at

-- name: assign.finished_at
finished_at = :finished_at

-- name: assign.output
output = :output

-- name: assign.error
error = :error

-- name: assign.sleep_until
sleep_until = :sleep_until

-- name: assign.last_activity_at
last_activity_at = :last_activity_at

-- name: assign.wake_claimed_until
wake_claimed_until = :wake_claimed_until

-- name: assign.registration
registration = :registration

-- name: list_instances
SELECT {instance_columns} FROM instances WHERE {instance_filter}
ORDER BY created_at DESC, instance_id LIMIT :limit OFFSET :offset

-- name: count_instances
SELECT count(*) FROM instances WHERE {instance_filter}

-- name: instance_filter.tenant_id
tenant_id = :tenant_id

-- name: instance_filter.status
status = :status

-- name: list_instances_after
-- A page of the list from a cursor (the last row of the page before), read
-- from the order's index at the cursor: no OFFSET, whatever the page's depth.
SELECT {instance_columns} FROM instances WHERE {page_filter}
ORDER BY created_at DESC, instance_id LIMIT :limit

-- name: page_filter.tenant_id
tenant_id = :tenant_id

-- name: page_filter.status
status = :status

-- name: page_filter.after
-- The first term starts the index range at the cursor; the second leaves out
-- the cursor's row and those before it created at the same time.
created_at <= :after_created_at
AND (created_at < :after_created_at OR instance_id > :after_instance_id)

-- name: list_instances_before
-- The page before a cursor (the first row of the page after it): the same
-- index read backwards from the cursor; the caller puts the rows back in the
-- list's order.
SELECT {instance_columns} FROM instances WHERE {page_filter}
ORDER BY created_at, instance_id DESC LIMIT :limit

-- name: page_filter.before
created_at >= :before_created_at
AND (created_at > :before_created_at OR instance_id < :before_instance_id)

-- name: count_instances_up_to
-- A page's count that stops at :at_most rows (shown as "1,000+").
SELECT count(*) FROM (SELECT 1 FROM instances WHERE {instance_filter} LIMIT :at_most) AS counted

-- name: select_due_sleepers
-- Sleepers nothing launches: the launcher's --wake-command gives them a launch.
-- NOT EXISTS looks each due sleeper's launch up by key (NOT IN would read them all).
SELECT {instance_columns} FROM instances
WHERE status = 'suspended' AND sleep_until IS NOT NULL AND sleep_until <= :due_before
  AND NOT EXISTS (SELECT 1 FROM instance_launches l WHERE l.instance_id = instances.instance_id)
ORDER BY sleep_until, instance_id LIMIT :limit

-- name: list_stale_instances
SELECT {instance_columns} FROM instances
WHERE status = 'running' AND coalesce(last_activity_at, started_at, created_at) < :cutoff
ORDER BY coalesce(last_activity_at, started_at, created_at), instance_id LIMIT :limit

-- name: list_finished_before
SELECT instance_id FROM instances
WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < :cutoff
ORDER BY finished_at, instance_id LIMIT :limit

-- name: delete_finished_before
-- A batch of prune in one statement: the oldest instances finished before
-- :cutoff, their status and end checked again on the rows it deletes (one made
-- live again meanwhile is kept); foreign keys cascade to what they own.
DELETE FROM instances
WHERE instance_id IN (
    SELECT instance_id FROM instances
    WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < :cutoff
    ORDER BY finished_at, instance_id LIMIT :limit)
  AND status IN ('completed', 'failed', 'cancelled') AND finished_at < :cutoff
RETURNING instance_id

-- name: delete_instance
-- Foreign keys cascade to checkpoints, events and signals.
DELETE FROM instances WHERE instance_id = :instance_id

-- === checkpoints ===============================================================

-- name: insert_checkpoint
INSERT INTO checkpoints (instance_id, checkpoint_id, state, created_at)
VALUES (:instance_id, :checkpoint_id, :state, :now)
ON CONFLICT (instance_id, checkpoint_id) DO NOTHING

-- name: get_checkpoint
SELECT state, created_at FROM checkpoints
WHERE instance_id = :instance_id AND checkpoint_id = :checkpoint_id

-- name: save_retry_attempt
INSERT INTO checkpoints
    (instance_id, checkpoint_id, state, created_at, is_retry_attempt, attempt_number, error_message)
VALUES (:instance_id, :checkpoint_id, :state, :now, TRUE, :attempt, :error_message)
ON CONFLICT (instance_id, checkpoint_id) DO UPDATE SET
    state = excluded.state,
    created_at = excluded.created_at,
    attempt_number = excluded.attempt_number,
    error_message = excluded.error_message

-- name: list_checkpoints
SELECT checkpoint_id, length(state), created_at FROM checkpoints
WHERE instance_id = :instance_id AND {checkpoint_filter}
ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset

-- name: count_checkpoints
SELECT count(*) FROM checkpoints WHERE instance_id = :instance_id AND {checkpoint_filter}

-- name: checkpoint_filter.checkpoint_id
checkpoint_id = :checkpoint_id

-- name: checkpoint_filter.created_after
created_at >= :created_after

-- name: checkpoint_filter.created_before
created_at < :created_before

-- === events ====================================================================

-- name: insert_event
INSERT INTO instance_events (instance_id, event_type, checkpoint_id, payload, created_at, subtype)
VALUES (:instance_id, :event_type, :checkpoint_id, :payload, :created_at, :subtype)
RETURNING id

-- name: list_events
SELECT id, instance_id, CAST(event_type AS TEXT), checkpoint_id, payload, created_at, subtype
FROM instance_events WHERE instance_id = :instance_id AND {event_filter}
ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset

-- name: count_events
SELECT count(*) FROM instance_events WHERE instance_id = :instance_id AND {event_filter}

-- name: event_filter.event_type
event_type = :event_type

-- name: event_filter.subtype
subtype = :subtype

-- name: event_filter.created_after
created_at >= :created_after

-- name: event_filter.created_before
created_at < :created_before

-- === signals ===================================================================

-- name: put_signal
INSERT INTO pending_signals (instance_id, signal_type, payload, created_at)
VALUES (:instance_id, :signal_type, :payload, :now)
ON CONFLICT (instance_id) DO UPDATE SET
    signal_type = excluded.signal_type,
    payload = excluded.payload,
    created_at = excluded.created_at,
    acknowledged_at = NULL

-- name: get_pending_signal
SELECT CAST(signal_type AS TEXT), payload, created_at FROM pending_signals
WHERE instance_id = :instance_id AND acknowledged_at IS NULL

-- name: acknowledge_signal
UPDATE pending_signals SET acknowledged_at = :now
WHERE instance_id = :instance_id AND signal_type = :signal_type AND acknowledged_at IS NULL

-- name: put_custom_signal
INSERT INTO pending_checkpoint_signals (instance_id, checkpoint_id, payload, created_at)
VALUES (:instance_id, :checkpoint_id, :payload, :now)
ON CONFLICT (instance_id, checkpoint_id) DO UPDATE SET
    payload = excluded.payload,
    created_at = excluded.created_at

-- name: take_custom_signal
DELETE FROM pending_checkpoint_signals
WHERE instance_id = :instance_id AND checkpoint_id = :checkpoint_id
RETURNING payload, created_at

-- name: list_custom_signals
SELECT checkpoint_id, payload, created_at FROM pending_checkpoint_signals
WHERE instance_id = :instance_id ORDER BY created_at, checkpoint_id

-- === launches ==================================================================
-- The launch protocol (runtara/storage/launches.py) moves a launch from state to
-- state with update_launch_held: one compare-and-set on who holds it.

-- name: launch_columns
-- A launch's columns, in the order SqlTransaction._launch reads them.
instance_id, spec, input, max_failures, attempt, failures, resumed_from, launched_at,
next_launch_at, claimed_by, claimed_until, pid, pid_started, host, registration, stop_deadline,
last_exit, queue, concurrency_key, priority, origin_instance, origin_checkpoint,
parent_instance, on_parent_cancel

-- name: launch_columns_of_l
-- The same, of the launches aliased l in a join with instances.
l.instance_id, l.spec, l.input, l.max_failures, l.attempt, l.failures, l.resumed_from,
l.launched_at, l.next_launch_at, l.claimed_by, l.claimed_until, l.pid, l.pid_started, l.host,
l.registration, l.stop_deadline, l.last_exit, l.queue, l.concurrency_key, l.priority,
l.origin_instance, l.origin_checkpoint, l.parent_instance, l.on_parent_cancel

-- name: insert_launch
INSERT INTO instance_launches (instance_id, spec, input, max_failures, attempt, next_launch_at,
                               queue, concurrency_key, priority, origin_instance,
                               origin_checkpoint, parent_instance, on_parent_cancel)
VALUES (:instance_id, :spec, :input, :max_failures, :attempt, :next_launch_at,
        :queue, :concurrency_key, :priority, :origin_instance,
        :origin_checkpoint, :parent_instance, :on_parent_cancel)

-- name: get_launch
SELECT {launch_columns} FROM instance_launches WHERE instance_id = :instance_id

-- name: update_launch
UPDATE instance_launches SET {launch_assign} WHERE instance_id = :instance_id

-- name: update_launch_held
UPDATE instance_launches SET {launch_assign}
WHERE instance_id = :instance_id AND claimed_by IS NOT DISTINCT FROM :held_by
  AND attempt = :held_attempt

-- name: launch_assign.spec
spec = :spec

-- name: launch_assign.input
input = :input

-- name: launch_assign.attempt
attempt = :attempt

-- name: launch_assign.failures
failures = :failures

-- name: launch_assign.resumed_from
resumed_from = :resumed_from

-- name: launch_assign.launched_at
launched_at = :launched_at

-- name: launch_assign.next_launch_at
next_launch_at = :next_launch_at

-- name: launch_assign.claimed_by
claimed_by = :claimed_by

-- name: launch_assign.claimed_until
claimed_until = :claimed_until

-- name: launch_assign.pid
pid = :pid

-- name: launch_assign.pid_started
pid_started = :pid_started

-- name: launch_assign.host
host = :host

-- name: launch_assign.registration
registration = :registration

-- name: launch_assign.stop_deadline
stop_deadline = :stop_deadline

-- name: launch_assign.last_exit
last_exit = :last_exit

-- name: select_due_launches
-- Locks the instances' rows, skipping those another transaction holds:
-- instance rows are locked before launch rows everywhere (in SQLite, no one
-- else claims between this read and the claim). Leaves out launches whose queue
-- is paused or at a limit; the highest priority first, then one of each
-- concurrency key in turn (round-robin), then the earliest due.
SELECT c.instance_id FROM (
    SELECT l.instance_id, l.priority, l.next_launch_at,
           ROW_NUMBER() OVER (PARTITION BY l.queue, l.priority, l.concurrency_key
                              ORDER BY l.next_launch_at, l.instance_id) AS turn
    FROM instance_launches l LEFT JOIN queues q ON q.name = l.queue
    WHERE l.next_launch_at IS NOT NULL AND l.next_launch_at <= :now
      AND (l.claimed_until IS NULL OR l.claimed_until <= :now)
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
                WHERE s.queue = l.queue AND s.expires_at > :now))))
) c JOIN instances i ON i.instance_id = c.instance_id
ORDER BY c.priority DESC, c.turn, c.next_launch_at, c.instance_id LIMIT :limit
FOR UPDATE OF i SKIP LOCKED

-- name: list_lapsed_launches
-- Three parts, each read through an index, rather than one condition with OR
-- (which reads every launch, those of finished instances included): claims
-- run out; launches of pending and running instances nobody holds; those of
-- due sleepers nobody holds.
SELECT {launch_columns_of_l} FROM instance_launches l
WHERE l.claimed_by IS NOT NULL AND l.claimed_until <= :now
UNION ALL
SELECT {launch_columns_of_l}
FROM instances i JOIN instance_launches l ON l.instance_id = i.instance_id
WHERE i.status IN ('pending', 'running') AND l.claimed_by IS NULL AND l.next_launch_at IS NULL
UNION ALL
SELECT {launch_columns_of_l}
FROM instances i JOIN instance_launches l ON l.instance_id = i.instance_id
WHERE i.status = 'suspended' AND i.sleep_until IS NOT NULL AND i.sleep_until <= :due_before
  AND l.claimed_by IS NULL AND l.next_launch_at IS NULL
ORDER BY 1 LIMIT :limit

-- name: list_claimed_launches
SELECT {launch_columns} FROM instance_launches WHERE claimed_by = :claimed_by
ORDER BY instance_id LIMIT :limit

-- name: list_children
SELECT {launch_columns} FROM instance_launches WHERE parent_instance = :parent_instance
ORDER BY instance_id

-- === queues ====================================================================

-- name: queue_columns
-- In the order SqlTransaction._queue reads them.
name, concurrency, per_key, rate_limit, rate_period, paused

-- name: get_queue
SELECT {queue_columns} FROM queues WHERE name = :name

-- name: get_queue_for_update
SELECT {queue_columns} FROM queues WHERE name = :name
FOR UPDATE

-- name: list_queues
SELECT {queue_columns} FROM queues ORDER BY name

-- name: lock_queues
-- Every claim decided by a queue's limits is taken with the queue rows locked,
-- in name order: launchers of several servers decide one at a time.
SELECT name FROM queues ORDER BY name
FOR UPDATE

-- name: put_queue
INSERT INTO queues (name, concurrency, per_key, rate_limit, rate_period, paused)
VALUES (:name, :concurrency, :per_key, :rate_limit, :rate_period, :paused)
ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
    per_key = excluded.per_key, rate_limit = excluded.rate_limit,
    rate_period = excluded.rate_period, paused = excluded.paused

-- name: count_queue_claimed
SELECT COUNT(*) FROM instance_launches WHERE queue = :queue AND claimed_by IS NOT NULL

-- name: count_key_claimed
SELECT COUNT(*) FROM instance_launches
WHERE queue = :queue AND concurrency_key = :concurrency_key AND claimed_by IS NOT NULL

-- name: insert_queue_start
INSERT INTO queue_starts (queue, expires_at) VALUES (:queue, :expires_at)

-- name: count_queue_starts
SELECT COUNT(*) FROM queue_starts WHERE queue = :queue AND expires_at > :now

-- name: delete_expired_queue_starts
DELETE FROM queue_starts WHERE queue = :queue AND expires_at <= :now

-- name: queue_figures
-- Per queue: launches claimed, due now, and due later (a delay, a back-off).
-- Two parts, each read through its index (the claims; the launches with a
-- due time), rather than one condition with OR, which reads every launch.
SELECT queue, SUM(claimed), SUM(due), SUM(later) FROM (
    SELECT queue, 1 AS claimed, 0 AS due, 0 AS later
    FROM instance_launches WHERE claimed_by IS NOT NULL
    UNION ALL
    SELECT queue, 0, CASE WHEN next_launch_at <= :now THEN 1 ELSE 0 END,
           CASE WHEN next_launch_at > :now THEN 1 ELSE 0 END
    FROM instance_launches WHERE next_launch_at IS NOT NULL AND claimed_by IS NULL
) AS counted
GROUP BY queue ORDER BY queue

-- === schedules =================================================================

-- name: schedule_columns
-- In the order SqlTransaction._schedule reads them.
name, cron, every, timezone, overlap, catch_up, tenant_id, spec, input, created_at,
next_tick_at, paused, last_tick_at, last_instance_id, ticks, skipped

-- name: get_schedule
SELECT {schedule_columns} FROM schedules WHERE name = :name

-- name: get_schedule_for_update
SELECT {schedule_columns} FROM schedules WHERE name = :name
FOR UPDATE

-- name: list_schedules
SELECT {schedule_columns} FROM schedules ORDER BY name

-- name: select_due_schedules
SELECT name FROM schedules WHERE NOT paused AND next_tick_at <= :now
ORDER BY next_tick_at, name LIMIT :limit
FOR UPDATE SKIP LOCKED

-- name: put_schedule
INSERT INTO schedules (name, cron, every, timezone, overlap, catch_up, tenant_id, spec, input,
                       created_at, next_tick_at, paused, last_tick_at, last_instance_id, ticks,
                       skipped)
VALUES (:name, :cron, :every, :timezone, :overlap, :catch_up, :tenant_id, :spec, :input,
        :created_at, :next_tick_at, :paused, :last_tick_at, :last_instance_id, :ticks, :skipped)
ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, every = excluded.every,
    timezone = excluded.timezone, overlap = excluded.overlap, catch_up = excluded.catch_up,
    tenant_id = excluded.tenant_id, spec = excluded.spec, input = excluded.input,
    created_at = excluded.created_at, next_tick_at = excluded.next_tick_at,
    paused = excluded.paused, last_tick_at = excluded.last_tick_at,
    last_instance_id = excluded.last_instance_id, ticks = excluded.ticks,
    skipped = excluded.skipped

-- name: delete_schedule
DELETE FROM schedules WHERE name = :name
