"""What each operation does to the store: the engine's rules, one transaction each.

Every function here takes the open :class:`~runtara.storage.transaction.Transaction`
and the server's time ``now``, and is the whole of one operation: the instance
protocol's requests (README: Protocol behaviour) and the operators' actions.
Refusals are :class:`runtara.errors.RequestError` (instance protocol) or
:class:`runtara.errors.OperationRefused` (operators), raised before anything is
written, so a refused operation leaves the transaction untouched.

Drivers run these through :class:`~runtara.storage.base.StorageDriver`'s
operation methods, which a driver may replace with an equivalent of its own
(one server-side call, say); the conformance kit holds both to the same rules.
"""

from __future__ import annotations

import datetime as dt

from runtara import errors, limits, records
from runtara.records import EventType, InstanceStatus, InstanceUpdate
from runtara.storage import launches
from runtara.storage.transaction import Transaction

_STATUS_CHANGING = frozenset({EventType.COMPLETED, EventType.FAILED, EventType.SUSPENDED})


def require_instance(
    tx: Transaction, instance_id: str, registration: int | None = None
) -> records.Instance:
    """The instance, locked for the rest of the transaction; InstanceNotFound if absent.

    With ``registration`` (the one the calling process holds), Superseded if the
    instance was registered again since: only the newest registration progresses.
    """
    instance = tx.get_instance(instance_id)
    if instance is None:
        raise errors.InstanceNotFound(instance_id)
    if registration is not None and registration != instance.registration:
        raise errors.Superseded(instance_id, registration, instance.registration)
    return instance


def _require_running(instance: records.Instance) -> None:
    if instance.status is not InstanceStatus.RUNNING:
        raise errors.InvalidInstanceState(
            instance.instance_id, InstanceStatus.RUNNING.value, instance.status.value
        )


def _touch(tx: Transaction, instance_id: str, now: dt.datetime) -> None:
    tx.update_instance(instance_id, InstanceUpdate(last_activity_at=now))


# --- the instance protocol ----------------------------------------------------


def register_instance(
    tx: Transaction,
    instance_id: str,
    tenant_id: str,
    checkpoint_id: str | None,
    now: dt.datetime,
    registration: int | None = None,
) -> int:
    """Make the instance ``running`` (creating it if new), record ``started``, and
    return its registration number: from now on, requests of processes that
    registered the instance before are refused (Superseded).

    ``registration`` is the one the calling process holds, if any: naming the
    current one (the process registering again, after a lost reply or a sleep)
    keeps that number; naming an older one is refused (Superseded), so that a
    superseded process cannot take the instance back. Refused
    (RegistrationRefused) for another tenant's instance, a finished one, and a
    ``checkpoint_id`` the instance does not have.
    """
    instance = tx.get_instance(instance_id)
    if instance is None:
        if checkpoint_id is not None:
            raise errors.RegistrationRefused(str(errors.CheckpointNotFound(checkpoint_id)))
        if not tx.create_instance(instance_id, tenant_id, now):
            # Another registration created it since (a missing row locks nothing):
            # read it, locked now, and go on as for an existing instance.
            instance = tx.get_instance(instance_id)
    if instance is None:
        number = 1
    else:
        if instance.tenant_id != tenant_id:
            raise errors.RegistrationRefused(str(errors.TenantMismatch(instance_id)))
        if instance.status.is_terminal:
            raise errors.RegistrationRefused(
                f"{errors.InstanceFinished(instance_id, instance.status.value)}; "
                "start a new instance id instead"
            )
        if checkpoint_id is not None and tx.get_checkpoint(instance_id, checkpoint_id) is None:
            raise errors.RegistrationRefused(str(errors.CheckpointNotFound(checkpoint_id)))
        if registration is not None and registration < instance.registration:
            raise errors.Superseded(instance_id, registration, instance.registration)
        same = registration is not None and registration == instance.registration
        number = instance.registration if same else instance.registration + 1
    tx.update_instance(
        instance_id,
        InstanceUpdate(
            status=InstanceStatus.RUNNING,
            started_at=now,
            sleep_until=None,
            last_activity_at=now,
            registration=number,
        ),
    )
    tx.insert_event(
        records.Event(
            instance_id=instance_id,
            event_type=EventType.STARTED,
            created_at=now,
            checkpoint_id=checkpoint_id,
        )
    )
    return number


def _signals(tx: Transaction, instance_id: str, checkpoint_id: str | None) -> records.Signals:
    return records.Signals(
        pending=tx.get_pending_signal(instance_id),
        custom=None if checkpoint_id is None else tx.take_custom_signal(instance_id, checkpoint_id),
    )


def checkpoint(
    tx: Transaction,
    instance_id: str,
    checkpoint_id: str,
    state: bytes,
    now: dt.datetime,
    registration: int | None = None,
) -> records.CheckpointOutcome:
    """Save ``state`` unless the id holds one already (then return that one); report
    the pending signal and take the custom signal of this checkpoint id.

    The instance must be running.
    """
    _require_running(require_instance(tx, instance_id, registration))
    if tx.insert_checkpoint(instance_id, checkpoint_id, state, now):
        tx.update_instance(
            instance_id, InstanceUpdate(checkpoint_id=checkpoint_id, last_activity_at=now)
        )
        found, stored = False, b""
    else:
        found, stored = True, tx.get_checkpoint(instance_id, checkpoint_id).state
        _touch(tx, instance_id, now)
    return records.CheckpointOutcome(found, stored, _signals(tx, instance_id, checkpoint_id))


def get_checkpoint(
    tx: Transaction,
    instance_id: str,
    checkpoint_id: str,
    now: dt.datetime,
    registration: int | None = None,
) -> bytes | None:
    """The state stored under ``checkpoint_id``, or None; the instance must exist."""
    require_instance(tx, instance_id, registration)
    _touch(tx, instance_id, now)
    stored = tx.get_checkpoint(instance_id, checkpoint_id)
    return None if stored is None else stored.state


def begin_sleep(
    tx: Transaction,
    instance_id: str,
    duration: dt.timedelta,
    checkpoint_id: str,
    state: bytes,
    now: dt.datetime,
    registration: int | None = None,
) -> dt.datetime:
    """Suspend a running instance until ``now + duration`` (whole milliseconds, so that
    every driver gives back exactly this value) and return that time.

    A non-empty ``checkpoint_id`` saves ``state`` under it first, as Checkpoint would.
    """
    _require_running(require_instance(tx, instance_id, registration))
    until = now + duration
    until = until.replace(microsecond=until.microsecond // 1000 * 1000)
    update = InstanceUpdate(
        status=InstanceStatus.SUSPENDED, sleep_until=until, last_activity_at=now
    )
    if checkpoint_id and tx.insert_checkpoint(instance_id, checkpoint_id, state, now):
        update = InstanceUpdate(
            status=InstanceStatus.SUSPENDED,
            sleep_until=until,
            last_activity_at=now,
            checkpoint_id=checkpoint_id,
        )
    tx.update_instance(instance_id, update)
    return until


def finish_sleep(
    tx: Transaction, instance_id: str, sleep_until: dt.datetime, now: dt.datetime
) -> None:
    """Wake the instance, unless something else changed it during the sleep."""
    instance = tx.get_instance(instance_id)
    if (
        instance is not None
        and instance.status is InstanceStatus.SUSPENDED
        and instance.sleep_until == sleep_until
    ):
        tx.update_instance(
            instance_id,
            InstanceUpdate(status=InstanceStatus.RUNNING, sleep_until=None, last_activity_at=now),
        )


def failure_text(payload: bytes) -> str:
    """The error text of a ``failed`` event's payload."""
    if not payload:
        return "Unknown error"
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return "Unknown error (binary payload)"


def _repeats_final_event(instance: records.Instance, kind: EventType, payload: bytes) -> bool:
    if kind is EventType.COMPLETED:
        return instance.status is InstanceStatus.COMPLETED and instance.output == (payload or None)
    if kind is EventType.FAILED:
        return instance.status is InstanceStatus.FAILED and instance.error == failure_text(payload)
    return False


def _status_update(kind: EventType, payload: bytes, now: dt.datetime) -> InstanceUpdate:
    if kind is EventType.COMPLETED:
        return InstanceUpdate(
            status=InstanceStatus.COMPLETED,
            finished_at=now,
            output=payload or None,
            error=None,
            sleep_until=None,
            last_activity_at=now,
        )
    if kind is EventType.FAILED:
        return InstanceUpdate(
            status=InstanceStatus.FAILED,
            finished_at=now,
            output=None,
            error=failure_text(payload),
            sleep_until=None,
            last_activity_at=now,
        )
    if kind is EventType.SUSPENDED:
        return InstanceUpdate(status=InstanceStatus.SUSPENDED, last_activity_at=now)
    return InstanceUpdate(last_activity_at=now)


def record_event(
    tx: Transaction,
    instance_id: str,
    kind: EventType,
    payload: bytes,
    now: dt.datetime,
    *,
    checkpoint_id: str | None = None,
    subtype: str | None = None,
    registration: int | None = None,
) -> None:
    """Store an event at ``now`` and apply its status change.

    Completed, failed and cancelled are final: an exact repeat of the final event
    changes nothing, any other status-changing event is refused (InstanceFinished);
    heartbeats and custom events are still recorded.
    """
    instance = require_instance(tx, instance_id, registration)
    if instance.status.is_terminal and kind in _STATUS_CHANGING:
        if _repeats_final_event(instance, kind, payload):
            _touch(tx, instance_id, now)
            return
        raise errors.InstanceFinished(instance_id, instance.status.value)
    tx.insert_event(
        records.Event(
            instance_id=instance_id,
            event_type=kind,
            created_at=now,
            checkpoint_id=checkpoint_id,
            payload=payload or None,
            subtype=subtype,
        )
    )
    if instance.status.is_terminal:
        _touch(tx, instance_id, now)
    else:
        tx.update_instance(instance_id, _status_update(kind, payload, now))


def instance_status(tx: Transaction, instance_id: str, now: dt.datetime) -> records.Instance | None:
    """The instance as stored (None if unknown); counts as activity."""
    instance = tx.get_instance(instance_id)
    if instance is not None:
        _touch(tx, instance_id, now)
    return instance


def poll_signals(
    tx: Transaction,
    instance_id: str,
    checkpoint_id: str | None,
    now: dt.datetime,
    registration: int | None = None,
) -> records.Signals:
    """The pending signal, and the custom signal of ``checkpoint_id`` (taken).

    An unknown instance has no signals (as upstream answers).
    """
    instance = tx.get_instance(instance_id)
    if instance is None:
        return records.Signals()
    if registration is not None and registration != instance.registration:
        raise errors.Superseded(instance_id, registration, instance.registration)
    _touch(tx, instance_id, now)
    return _signals(tx, instance_id, checkpoint_id)


def acknowledge_signal(
    tx: Transaction,
    instance_id: str,
    signal_type: records.SignalType,
    acknowledged: bool,
    now: dt.datetime,
    registration: int | None = None,
) -> None:
    """Mark the pending signal of ``signal_type`` acknowledged (a signal that replaced
    it stays pending); an acknowledged cancel makes a live instance ``cancelled``."""
    instance = require_instance(tx, instance_id, registration)
    update = InstanceUpdate(last_activity_at=now)
    if acknowledged:
        tx.acknowledge_signal(instance_id, signal_type, now)
        if signal_type is records.SignalType.CANCEL and not instance.status.is_terminal:
            update = InstanceUpdate(
                status=InstanceStatus.CANCELLED,
                finished_at=now,
                sleep_until=None,
                last_activity_at=now,
            )
    tx.update_instance(instance_id, update)


def record_retry(
    tx: Transaction,
    instance_id: str,
    checkpoint_id: str,
    attempt: int,
    error_message: str | None,
    now: dt.datetime,
    registration: int | None = None,
) -> None:
    """Record retry ``attempt`` of the step ``checkpoint_id``."""
    require_instance(tx, instance_id, registration)
    tx.save_retry_attempt(instance_id, checkpoint_id, attempt, error_message, now)
    _touch(tx, instance_id, now)


# --- operators ----------------------------------------------------------------


def require_id(value: str, name: str) -> None:
    """An operator's id argument must be given, free of NUL and within its length
    (:data:`runtara.limits.TEXT_LIMITS`)."""
    if not value:
        raise errors.OperationRefused(f"{name} is required")
    problem = limits.text_problem(name, value)
    if problem is not None:
        raise errors.OperationRefused(problem)


def _signalable(tx: Transaction, instance_id: str) -> None:
    instance = tx.get_instance(instance_id)
    if instance is None:
        raise errors.OperationRefused(f"Instance '{instance_id}' not found")
    if instance.status.is_terminal:
        raise errors.OperationRefused(
            f"Cannot send signal to instance in '{instance.status.value}' state (terminal state)"
        )


def send_signal(
    tx: Transaction,
    instance_id: str,
    signal_type: records.SignalType,
    payload: bytes,
    now: dt.datetime,
) -> None:
    """Make this the pending signal of a live instance (replacing any earlier one).

    A resume of a suspended instance started with ``start`` makes it due for its
    launcher at once.
    """
    require_id(instance_id, "instance_id")
    limits.check_signal_payload(instance_id, len(payload))
    _signalable(tx, instance_id)
    tx.put_signal(instance_id, signal_type, payload, now)
    if signal_type is records.SignalType.RESUME:
        launches.resume(tx, instance_id, now)
    elif signal_type is records.SignalType.CANCEL:
        launches.stop_children(tx, instance_id, launches.STOP_GRACE, now)


def send_custom_signal(
    tx: Transaction, instance_id: str, checkpoint_id: str, payload: bytes, now: dt.datetime
) -> None:
    """Leave a signal for one checkpoint id of a live instance, taken once."""
    require_id(instance_id, "instance_id")
    require_id(checkpoint_id, "checkpoint_id")
    limits.check_signal_payload(checkpoint_id, len(payload))
    _signalable(tx, instance_id)
    tx.put_custom_signal(instance_id, checkpoint_id, payload, now)


def _existing(tx: Transaction, instance_id: str) -> None:
    if tx.get_instance(instance_id) is None:
        raise errors.OperationRefused(f"Instance '{instance_id}' not found")


def list_instances(
    tx: Transaction,
    *,
    tenant_id: str | None = None,
    status: InstanceStatus | None = None,
    limit: int = 100,
    offset: int = 0,
) -> records.Page[records.Instance]:
    return records.Page(
        tx.list_instances(tenant_id=tenant_id, status=status, limit=limit, offset=offset),
        tx.count_instances(tenant_id=tenant_id, status=status),
    )


def instance_details(
    tx: Transaction, instance_id: str, recent_events: int = 10, now: dt.datetime | None = None
) -> records.InstanceDetails | None:
    """The instance and what goes with it; with ``now``, why it waits to be launched."""
    instance = tx.get_instance(instance_id)
    if instance is None:
        return None
    launch = tx.get_launch(instance_id)
    return records.InstanceDetails(
        instance,
        tx.get_pending_signal(instance_id),
        tx.list_custom_signals(instance_id),
        tx.list_events(instance_id, limit=recent_events) if recent_events else [],
        launch,
        None if launch is None or now is None else launches.wait_reason(tx, instance, launch, now),
        [child.instance_id for child in tx.list_children(instance_id)],
    )


def count_active(tx: Transaction) -> int:
    """Running and suspended instances."""
    return tx.count_instances(status=InstanceStatus.RUNNING) + tx.count_instances(
        status=InstanceStatus.SUSPENDED
    )


def list_checkpoints(
    tx: Transaction,
    instance_id: str,
    checkpoint_filter: records.CheckpointFilter = records.ALL_CHECKPOINTS,
    *,
    limit: int = 100,
    offset: int = 0,
) -> records.Page[records.CheckpointInfo]:
    _existing(tx, instance_id)
    return records.Page(
        tx.list_checkpoints(instance_id, checkpoint_filter, limit=limit, offset=offset),
        tx.count_checkpoints(instance_id, checkpoint_filter),
    )


def read_checkpoint(
    tx: Transaction, instance_id: str, checkpoint_id: str
) -> records.Checkpoint | None:
    _existing(tx, instance_id)
    return tx.get_checkpoint(instance_id, checkpoint_id)


def list_events(
    tx: Transaction,
    instance_id: str,
    event_filter: records.EventFilter = records.ALL_EVENTS,
    *,
    limit: int = 100,
    offset: int = 0,
) -> records.Page[records.Event]:
    _existing(tx, instance_id)
    return records.Page(
        tx.list_events(instance_id, event_filter, limit=limit, offset=offset),
        tx.count_events(instance_id, event_filter),
    )


def fail_if_stale(
    tx: Transaction,
    instance_id: str,
    cutoff: dt.datetime,
    now: dt.datetime,
    stale_after: float,
) -> str | None:
    """Fail a running instance silent since before ``cutoff``; return its error, or None."""
    instance = tx.get_instance(instance_id)  # locked: re-check under the lock
    if instance is None or instance.status is not InstanceStatus.RUNNING:
        return None
    if tx.get_launch(instance_id) is not None:
        return None  # its launcher relaunches a silent one instead
    last = instance.last_activity_at or instance.started_at or instance.created_at
    if last >= cutoff:
        return None
    error = (
        f"Instance stale: no activity since {last.isoformat(timespec='seconds')} "
        f"(timeout: {stale_after:g}s)"
    )
    tx.update_instance(
        instance_id,
        InstanceUpdate(status=InstanceStatus.FAILED, finished_at=now, error=error, output=None),
    )
    return error


def delete_finished(tx: Transaction, instance_ids: list[str], cutoff: dt.datetime) -> list[str]:
    """Delete those of ``instance_ids`` still finished before ``cutoff``; return them."""
    gone = []
    for instance_id in instance_ids:
        instance = tx.get_instance(instance_id)  # locked: re-check under the lock
        if (
            instance is not None
            and instance.status.is_terminal
            and instance.finished_at is not None
            and instance.finished_at < cutoff
            and tx.delete_instance(instance_id)
        ):
            gone.append(instance_id)
    return gone
