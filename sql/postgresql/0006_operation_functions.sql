-- The instance protocol's ten operations as server-side functions, so that
-- each operation is one statement in its own transaction: one round trip
-- instead of seven. Each function does exactly what the rule of the same name
-- in runtara/storage/operations.py does: it locks the instance's row first
-- (FOR UPDATE, as the rules' get_instance does), writes the same rows, and
-- takes every time from its p_now parameter, never from the database clock,
-- so that a call PostgreSQL aborted (a deadlock, a serialization failure) can
-- be sent again and writes what the first would have.
--
-- A refusal is raised before anything is written, with the engine's message,
-- one of these SQLSTATEs, and the arguments of the engine's exception as a
-- JSON array in DETAIL (the driver raises that exception from them):
--   RT001  InstanceNotFound      [instance_id]
--   RT002  InvalidInstanceState  [instance_id, expected, actual]
--   RT003  InstanceFinished      [instance_id, status]
--   RT004  Superseded            [instance_id, yours, current]
--   RT005  RegistrationRefused   [message]

-- === refusals ==================================================================

CREATE FUNCTION runtara_instance_not_found(p_instance_id TEXT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'RT001',
        MESSAGE = format('Instance ''%s'' not found', p_instance_id),
        DETAIL = json_build_array(p_instance_id)::text;
END
$$;

CREATE FUNCTION runtara_invalid_state(p_instance_id TEXT, p_expected TEXT, p_actual TEXT)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'RT002',
        MESSAGE = format('Instance ''%s'' is in invalid state: expected ''%s'', got ''%s''',
                         p_instance_id, p_expected, p_actual),
        DETAIL = json_build_array(p_instance_id, p_expected, p_actual)::text;
END
$$;

CREATE FUNCTION runtara_instance_finished(p_instance_id TEXT, p_status TEXT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'RT003',
        MESSAGE = format('Instance ''%s'' is already %s (terminal state)', p_instance_id, p_status),
        DETAIL = json_build_array(p_instance_id, p_status)::text;
END
$$;

CREATE FUNCTION runtara_superseded(p_instance_id TEXT, p_yours BIGINT, p_current BIGINT)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'RT004',
        MESSAGE = format('Instance ''%s'' was registered again by another process '
                         '(registration %s; this process holds registration %s): '
                         'this process is superseded and must stop',
                         p_instance_id, p_current, p_yours),
        DETAIL = json_build_array(p_instance_id, p_yours, p_current)::text;
END
$$;

CREATE FUNCTION runtara_registration_refused(p_message TEXT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'RT005', MESSAGE = p_message,
        DETAIL = json_build_array(p_message)::text;
END
$$;

-- === shared steps ==============================================================

-- operations.require_instance: the instance, locked until the transaction
-- ends; refused if absent, or if p_registration (when given) was superseded.
CREATE FUNCTION runtara_require_instance(p_instance_id TEXT, p_registration BIGINT)
RETURNS instances LANGUAGE plpgsql AS $$
DECLARE
    current_row instances;
BEGIN
    SELECT * INTO current_row FROM instances i WHERE i.instance_id = p_instance_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM runtara_instance_not_found(p_instance_id);
    END IF;
    IF p_registration IS NOT NULL AND p_registration <> current_row.registration THEN
        PERFORM runtara_superseded(p_instance_id, p_registration, current_row.registration);
    END IF;
    RETURN current_row;
END
$$;

CREATE FUNCTION runtara_require_running(p_instance instances) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_instance.status <> 'running' THEN
        PERFORM runtara_invalid_state(p_instance.instance_id, 'running', p_instance.status::text);
    END IF;
END
$$;

-- The pending signal (not acknowledged), and the custom signal of
-- p_checkpoint_id, taken: DELETE ... RETURNING hands it to one caller only.
CREATE FUNCTION runtara_signals(
    p_instance_id TEXT, p_checkpoint_id TEXT,
    OUT pending_type TEXT, OUT pending_payload BYTEA, OUT pending_created_at TIMESTAMPTZ,
    OUT custom_payload BYTEA, OUT custom_created_at TIMESTAMPTZ
) LANGUAGE plpgsql AS $$
BEGIN
    SELECT s.signal_type::text, s.payload, s.created_at
    INTO pending_type, pending_payload, pending_created_at
    FROM pending_signals s WHERE s.instance_id = p_instance_id AND s.acknowledged_at IS NULL;
    IF p_checkpoint_id IS NOT NULL THEN
        DELETE FROM pending_checkpoint_signals c
        WHERE c.instance_id = p_instance_id AND c.checkpoint_id = p_checkpoint_id
        RETURNING c.payload, c.created_at INTO custom_payload, custom_created_at;
    END IF;
END
$$;

-- === the operations ============================================================

-- Returns the new registration number. A registration that finds the id
-- created meanwhile by another one registers it as an existing instance, so
-- concurrent registrations of a new id get distinct numbers.
CREATE FUNCTION runtara_register_instance(
    p_instance_id TEXT, p_tenant_id TEXT, p_checkpoint_id TEXT, p_now TIMESTAMPTZ
) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    current_row instances;
    next_registration BIGINT;
BEGIN
    LOOP
        SELECT * INTO current_row FROM instances i WHERE i.instance_id = p_instance_id FOR UPDATE;
        EXIT WHEN FOUND;
        IF p_checkpoint_id IS NOT NULL THEN
            PERFORM runtara_registration_refused(format('Checkpoint ''%s'' not found', p_checkpoint_id));
        END IF;
        INSERT INTO instances (instance_id, tenant_id, status, created_at)
        VALUES (p_instance_id, p_tenant_id, 'pending', p_now)
        ON CONFLICT (instance_id) DO NOTHING;
        IF FOUND THEN
            next_registration := 1;
            EXIT;
        END IF;
    END LOOP;
    IF next_registration IS NULL THEN
        IF current_row.tenant_id <> p_tenant_id THEN
            PERFORM runtara_registration_refused(
                format('Instance ''%s'' belongs to another tenant', p_instance_id));
        END IF;
        IF current_row.status IN ('completed', 'failed', 'cancelled') THEN
            PERFORM runtara_registration_refused(
                format('Instance ''%s'' is already %s (terminal state); '
                       'start a new instance id instead', p_instance_id, current_row.status));
        END IF;
        IF p_checkpoint_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM checkpoints c
            WHERE c.instance_id = p_instance_id AND c.checkpoint_id = p_checkpoint_id
        ) THEN
            PERFORM runtara_registration_refused(format('Checkpoint ''%s'' not found', p_checkpoint_id));
        END IF;
        next_registration := current_row.registration + 1;
    END IF;
    UPDATE instances i SET status = 'running', started_at = p_now, sleep_until = NULL,
        last_activity_at = p_now, registration = next_registration
    WHERE i.instance_id = p_instance_id;
    INSERT INTO instance_events (instance_id, event_type, checkpoint_id, created_at)
    VALUES (p_instance_id, 'started', p_checkpoint_id, p_now);
    RETURN next_registration;
END
$$;

-- existed: the id held a state already, which is stored_state (else it is
-- empty and p_state was saved); then the signals, as runtara_signals.
CREATE FUNCTION runtara_checkpoint(
    p_instance_id TEXT, p_checkpoint_id TEXT, p_state BYTEA, p_now TIMESTAMPTZ,
    p_registration BIGINT,
    OUT existed BOOLEAN, OUT stored_state BYTEA,
    OUT pending_type TEXT, OUT pending_payload BYTEA, OUT pending_created_at TIMESTAMPTZ,
    OUT custom_payload BYTEA, OUT custom_created_at TIMESTAMPTZ
) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM runtara_require_running(runtara_require_instance(p_instance_id, p_registration));
    INSERT INTO checkpoints (instance_id, checkpoint_id, state, created_at)
    VALUES (p_instance_id, p_checkpoint_id, p_state, p_now)
    ON CONFLICT (instance_id, checkpoint_id) DO NOTHING;
    IF FOUND THEN
        UPDATE instances i SET checkpoint_id = p_checkpoint_id, last_activity_at = p_now
        WHERE i.instance_id = p_instance_id;
        existed := false;
        stored_state := ''::bytea;
    ELSE
        SELECT c.state INTO stored_state FROM checkpoints c
        WHERE c.instance_id = p_instance_id AND c.checkpoint_id = p_checkpoint_id;
        existed := true;
        UPDATE instances i SET last_activity_at = p_now WHERE i.instance_id = p_instance_id;
    END IF;
    SELECT s.* INTO pending_type, pending_payload, pending_created_at,
                    custom_payload, custom_created_at
    FROM runtara_signals(p_instance_id, p_checkpoint_id) s;
END
$$;

-- The stored state, or NULL (a state is never NULL).
CREATE FUNCTION runtara_get_checkpoint(
    p_instance_id TEXT, p_checkpoint_id TEXT, p_now TIMESTAMPTZ, p_registration BIGINT
) RETURNS BYTEA LANGUAGE plpgsql AS $$
BEGIN
    PERFORM runtara_require_instance(p_instance_id, p_registration);
    UPDATE instances i SET last_activity_at = p_now WHERE i.instance_id = p_instance_id;
    RETURN (SELECT c.state FROM checkpoints c
            WHERE c.instance_id = p_instance_id AND c.checkpoint_id = p_checkpoint_id);
END
$$;

-- Returns the wake time: p_now plus p_duration_us microseconds, rounded down
-- to whole milliseconds (in UTC, so no time zone can shift it).
CREATE FUNCTION runtara_begin_sleep(
    p_instance_id TEXT, p_duration_us BIGINT, p_checkpoint_id TEXT, p_state BYTEA,
    p_now TIMESTAMPTZ, p_registration BIGINT
) RETURNS TIMESTAMPTZ LANGUAGE plpgsql AS $$
DECLARE
    wake_at TIMESTAMPTZ;
BEGIN
    PERFORM runtara_require_running(runtara_require_instance(p_instance_id, p_registration));
    wake_at := date_trunc('milliseconds', p_now + p_duration_us * interval '1 microsecond', 'UTC');
    IF coalesce(p_checkpoint_id, '') <> '' THEN
        INSERT INTO checkpoints (instance_id, checkpoint_id, state, created_at)
        VALUES (p_instance_id, p_checkpoint_id, p_state, p_now)
        ON CONFLICT (instance_id, checkpoint_id) DO NOTHING;
        IF FOUND THEN
            UPDATE instances i SET status = 'suspended', sleep_until = wake_at,
                last_activity_at = p_now, checkpoint_id = p_checkpoint_id
            WHERE i.instance_id = p_instance_id;
            RETURN wake_at;
        END IF;
    END IF;
    UPDATE instances i SET status = 'suspended', sleep_until = wake_at, last_activity_at = p_now
    WHERE i.instance_id = p_instance_id;
    RETURN wake_at;
END
$$;

CREATE FUNCTION runtara_finish_sleep(
    p_instance_id TEXT, p_sleep_until TIMESTAMPTZ, p_now TIMESTAMPTZ
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    current_row instances;
BEGIN
    SELECT * INTO current_row FROM instances i WHERE i.instance_id = p_instance_id FOR UPDATE;
    IF FOUND AND current_row.status = 'suspended' AND current_row.sleep_until = p_sleep_until THEN
        UPDATE instances i SET status = 'running', sleep_until = NULL, last_activity_at = p_now
        WHERE i.instance_id = p_instance_id;
    END IF;
END
$$;

-- p_error is the failure text of a failed event's payload, as the engine
-- decodes it (operations.failure_text); NULL for the other kinds.
CREATE FUNCTION runtara_record_event(
    p_instance_id TEXT, p_kind instance_event_type, p_payload BYTEA, p_error TEXT,
    p_now TIMESTAMPTZ, p_checkpoint_id TEXT, p_subtype TEXT, p_registration BIGINT
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    current_row instances;
    finished BOOLEAN;
BEGIN
    current_row := runtara_require_instance(p_instance_id, p_registration);
    finished := current_row.status IN ('completed', 'failed', 'cancelled');
    IF finished AND p_kind IN ('completed', 'failed', 'suspended') THEN
        IF (p_kind = 'completed' AND current_row.status = 'completed'
                AND current_row.output IS NOT DISTINCT FROM nullif(p_payload, ''::bytea))
            OR (p_kind = 'failed' AND current_row.status = 'failed'
                AND current_row.error = p_error) THEN
            UPDATE instances i SET last_activity_at = p_now WHERE i.instance_id = p_instance_id;
            RETURN;
        END IF;
        PERFORM runtara_instance_finished(p_instance_id, current_row.status::text);
    END IF;
    INSERT INTO instance_events (instance_id, event_type, checkpoint_id, payload, created_at, subtype)
    VALUES (p_instance_id, p_kind, p_checkpoint_id, nullif(p_payload, ''::bytea), p_now, p_subtype);
    IF finished OR p_kind NOT IN ('completed', 'failed', 'suspended') THEN
        UPDATE instances i SET last_activity_at = p_now WHERE i.instance_id = p_instance_id;
    ELSIF p_kind = 'completed' THEN
        UPDATE instances i SET status = 'completed', finished_at = p_now,
            output = nullif(p_payload, ''::bytea), error = NULL, sleep_until = NULL,
            last_activity_at = p_now
        WHERE i.instance_id = p_instance_id;
    ELSIF p_kind = 'failed' THEN
        UPDATE instances i SET status = 'failed', finished_at = p_now, output = NULL,
            error = p_error, sleep_until = NULL, last_activity_at = p_now
        WHERE i.instance_id = p_instance_id;
    ELSE
        UPDATE instances i SET status = 'suspended', last_activity_at = p_now
        WHERE i.instance_id = p_instance_id;
    END IF;
END
$$;

-- The instance as it was before this request touched it (no row: unknown);
-- the columns of the named query get_instance.
CREATE FUNCTION runtara_instance_status(p_instance_id TEXT, p_now TIMESTAMPTZ)
RETURNS TABLE (
    o_instance_id TEXT, o_tenant_id TEXT, o_status TEXT, o_created_at TIMESTAMPTZ,
    o_checkpoint_id TEXT, o_started_at TIMESTAMPTZ, o_finished_at TIMESTAMPTZ, o_output BYTEA,
    o_error TEXT, o_sleep_until TIMESTAMPTZ, o_last_activity_at TIMESTAMPTZ,
    o_wake_claimed_until TIMESTAMPTZ, o_registration BIGINT
) LANGUAGE plpgsql AS $$
DECLARE
    r instances;
BEGIN
    SELECT * INTO r FROM instances i WHERE i.instance_id = p_instance_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE instances i SET last_activity_at = p_now WHERE i.instance_id = p_instance_id;
    RETURN QUERY SELECT r.instance_id, r.tenant_id, r.status::text, r.created_at, r.checkpoint_id,
        r.started_at, r.finished_at, r.output, r.error, r.sleep_until, r.last_activity_at,
        r.wake_claimed_until, r.registration;
END
$$;

-- An unknown instance has no signals (all columns NULL, nothing written).
CREATE FUNCTION runtara_poll_signals(
    p_instance_id TEXT, p_checkpoint_id TEXT, p_now TIMESTAMPTZ, p_registration BIGINT,
    OUT pending_type TEXT, OUT pending_payload BYTEA, OUT pending_created_at TIMESTAMPTZ,
    OUT custom_payload BYTEA, OUT custom_created_at TIMESTAMPTZ
) LANGUAGE plpgsql AS $$
DECLARE
    current_registration BIGINT;
BEGIN
    SELECT i.registration INTO current_registration
    FROM instances i WHERE i.instance_id = p_instance_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_registration IS NOT NULL AND p_registration <> current_registration THEN
        PERFORM runtara_superseded(p_instance_id, p_registration, current_registration);
    END IF;
    UPDATE instances i SET last_activity_at = p_now WHERE i.instance_id = p_instance_id;
    SELECT s.* INTO pending_type, pending_payload, pending_created_at,
                    custom_payload, custom_created_at
    FROM runtara_signals(p_instance_id, p_checkpoint_id) s;
END
$$;

CREATE FUNCTION runtara_acknowledge_signal(
    p_instance_id TEXT, p_signal_type signal_type, p_acknowledged BOOLEAN, p_now TIMESTAMPTZ,
    p_registration BIGINT
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    current_row instances;
BEGIN
    current_row := runtara_require_instance(p_instance_id, p_registration);
    IF p_acknowledged THEN
        UPDATE pending_signals s SET acknowledged_at = p_now
        WHERE s.instance_id = p_instance_id AND s.signal_type = p_signal_type
          AND s.acknowledged_at IS NULL;
        IF p_signal_type = 'cancel'
                AND current_row.status NOT IN ('completed', 'failed', 'cancelled') THEN
            UPDATE instances i SET status = 'cancelled', finished_at = p_now, sleep_until = NULL,
                last_activity_at = p_now
            WHERE i.instance_id = p_instance_id;
            RETURN;
        END IF;
    END IF;
    UPDATE instances i SET last_activity_at = p_now WHERE i.instance_id = p_instance_id;
END
$$;

-- The retry is the checkpoint <p_checkpoint_id>::retry::<p_attempt>, its state
-- the UTF-8 error message; recording an attempt again replaces that row.
CREATE FUNCTION runtara_record_retry(
    p_instance_id TEXT, p_checkpoint_id TEXT, p_attempt BIGINT, p_error_message TEXT,
    p_now TIMESTAMPTZ, p_registration BIGINT
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM runtara_require_instance(p_instance_id, p_registration);
    INSERT INTO checkpoints
        (instance_id, checkpoint_id, state, created_at, is_retry_attempt, attempt_number,
         error_message)
    VALUES (p_instance_id, p_checkpoint_id || '::retry::' || p_attempt,
            convert_to(coalesce(p_error_message, ''), 'UTF8'), p_now, true, p_attempt,
            p_error_message)
    ON CONFLICT (instance_id, checkpoint_id) DO UPDATE SET
        state = excluded.state,
        created_at = excluded.created_at,
        attempt_number = excluded.attempt_number,
        error_message = excluded.error_message;
    UPDATE instances i SET last_activity_at = p_now WHERE i.instance_id = p_instance_id;
END
$$;
