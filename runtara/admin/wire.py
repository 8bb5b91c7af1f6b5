"""Records to management-protocol messages and back (both directions live here)."""

from __future__ import annotations

import datetime as dt

from runtara import records
from runtara.protocol import management_pb2 as mpb
from runtara.storage import base

_STATUS_TO_WIRE = {
    records.InstanceStatus.PENDING: mpb.STATUS_PENDING,
    records.InstanceStatus.RUNNING: mpb.STATUS_RUNNING,
    records.InstanceStatus.SUSPENDED: mpb.STATUS_SUSPENDED,
    records.InstanceStatus.COMPLETED: mpb.STATUS_COMPLETED,
    records.InstanceStatus.FAILED: mpb.STATUS_FAILED,
    records.InstanceStatus.CANCELLED: mpb.STATUS_CANCELLED,
}
_STATUS_FROM_WIRE = {wire: status for status, wire in _STATUS_TO_WIRE.items()}

_SIGNAL_TO_WIRE = {
    records.SignalType.CANCEL: mpb.SIGNAL_CANCEL,
    records.SignalType.PAUSE: mpb.SIGNAL_PAUSE,
    records.SignalType.RESUME: mpb.SIGNAL_RESUME,
}
_SIGNAL_FROM_WIRE = {wire: signal for signal, wire in _SIGNAL_TO_WIRE.items()}


def millis(value: dt.datetime) -> int:
    return round(value.timestamp() * 1000)


def from_millis(value: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(value / 1000, dt.timezone.utc)


def optional_time(message, field: str) -> dt.datetime | None:
    return from_millis(getattr(message, field)) if message.HasField(field) else None


def _optional(message, field: str):
    return getattr(message, field) if message.HasField(field) else None


def status_to_wire(status: records.InstanceStatus) -> int:
    return _STATUS_TO_WIRE[status]


def status_from_wire(value: int) -> records.InstanceStatus | None:
    """None for STATUS_UNKNOWN and numbers this version does not know."""
    return _STATUS_FROM_WIRE.get(value)


def signal_to_wire(signal: records.SignalType) -> int:
    return _SIGNAL_TO_WIRE[signal]


def signal_from_wire(value: int) -> records.SignalType | None:
    return _SIGNAL_FROM_WIRE.get(value)


def instance_to_wire(instance: records.Instance) -> mpb.InstanceSummary:
    message = mpb.InstanceSummary(
        instance_id=instance.instance_id,
        tenant_id=instance.tenant_id,
        status=status_to_wire(instance.status),
        created_at_ms=millis(instance.created_at),
    )
    for field, value in (
        ("started_at_ms", instance.started_at),
        ("finished_at_ms", instance.finished_at),
        ("last_activity_at_ms", instance.last_activity_at),
        ("sleep_until_ms", instance.sleep_until),
    ):
        if value is not None:
            setattr(message, field, millis(value))
    for field in ("checkpoint_id", "output", "error"):
        value = getattr(instance, field)
        if value is not None:
            setattr(message, field, value)
    return message


def instance_from_wire(message: mpb.InstanceSummary) -> records.Instance:
    return records.Instance(
        instance_id=message.instance_id,
        tenant_id=message.tenant_id,
        status=status_from_wire(message.status) or records.InstanceStatus.PENDING,
        created_at=from_millis(message.created_at_ms),
        checkpoint_id=_optional(message, "checkpoint_id"),
        started_at=optional_time(message, "started_at_ms"),
        finished_at=optional_time(message, "finished_at_ms"),
        output=_optional(message, "output"),
        error=_optional(message, "error"),
        sleep_until=optional_time(message, "sleep_until_ms"),
        last_activity_at=optional_time(message, "last_activity_at_ms"),
    )


def event_to_wire(event: records.Event) -> mpb.Event:
    message = mpb.Event(
        id=event.id or 0, event_type=event.event_type.value, created_at_ms=millis(event.created_at)
    )
    for field in ("checkpoint_id", "payload", "subtype"):
        value = getattr(event, field)
        if value is not None:
            setattr(message, field, value)
    return message


def event_from_wire(instance_id: str, message: mpb.Event) -> records.Event:
    return records.Event(
        instance_id=instance_id,
        event_type=records.EventType(message.event_type),
        created_at=from_millis(message.created_at_ms),
        checkpoint_id=_optional(message, "checkpoint_id"),
        payload=_optional(message, "payload"),
        subtype=_optional(message, "subtype"),
        id=message.id,
    )


def checkpoint_info_to_wire(info: base.CheckpointInfo) -> mpb.CheckpointSummary:
    return mpb.CheckpointSummary(
        checkpoint_id=info.checkpoint_id,
        instance_id=info.instance_id,
        created_at_ms=millis(info.created_at),
        data_size_bytes=info.size,
    )


def checkpoint_info_from_wire(message: mpb.CheckpointSummary) -> base.CheckpointInfo:
    return base.CheckpointInfo(
        message.instance_id,
        message.checkpoint_id,
        message.data_size_bytes,
        from_millis(message.created_at_ms),
    )


def signal_to_pending(signal: records.Signal) -> mpb.PendingSignal:
    return mpb.PendingSignal(
        signal_type=signal_to_wire(signal.signal_type),
        payload=signal.payload,
        created_at_ms=millis(signal.created_at),
    )


def signal_from_pending(instance_id: str, message: mpb.PendingSignal) -> records.Signal:
    return records.Signal(
        instance_id,
        signal_from_wire(message.signal_type) or records.SignalType.CANCEL,
        message.payload,
        from_millis(message.created_at_ms),
    )


def custom_signal_to_wire(signal: records.CustomSignal) -> mpb.PendingCustomSignal:
    return mpb.PendingCustomSignal(
        checkpoint_id=signal.checkpoint_id,
        payload=signal.payload,
        created_at_ms=millis(signal.created_at),
    )


def custom_signal_from_wire(
    instance_id: str, message: mpb.PendingCustomSignal
) -> records.CustomSignal:
    return records.CustomSignal(
        instance_id, message.checkpoint_id, message.payload, from_millis(message.created_at_ms)
    )
