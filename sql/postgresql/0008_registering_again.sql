-- A process that registers an instance again names the registration it holds:
-- the current one keeps its number (the same process, after a lost reply or a
-- sleep), an older one is refused as superseded (a superseded process cannot
-- take the instance back). The rule of operations.register_instance.
DROP FUNCTION runtara_register_instance(TEXT, TEXT, TEXT, TIMESTAMPTZ);

CREATE FUNCTION runtara_register_instance(
    p_instance_id TEXT, p_tenant_id TEXT, p_checkpoint_id TEXT, p_now TIMESTAMPTZ,
    p_registration BIGINT
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
        IF p_registration IS NOT NULL AND p_registration < current_row.registration THEN
            PERFORM runtara_superseded(p_instance_id, p_registration, current_row.registration);
        END IF;
        IF p_registration IS NOT NULL AND p_registration = current_row.registration THEN
            next_registration := current_row.registration;
        ELSE
            next_registration := current_row.registration + 1;
        END IF;
    END IF;
    UPDATE instances i SET status = 'running', started_at = p_now, sleep_until = NULL,
        last_activity_at = p_now, registration = next_registration
    WHERE i.instance_id = p_instance_id;
    INSERT INTO instance_events (instance_id, event_type, checkpoint_id, created_at)
    VALUES (p_instance_id, 'started', p_checkpoint_id, p_now);
    RETURN next_registration;
END
$$;
