"""Conversions between protobuf values and storage records."""

from __future__ import annotations

import datetime as dt

from google.protobuf.message import Message

from runtara import errors, records
from runtara.protocol import instance_pb2 as pb

_EVENT_TYPES = {
    pb.EVENT_HEARTBEAT: records.EventType.HEARTBEAT,
    pb.EVENT_COMPLETED: records.EventType.COMPLETED,
    pb.EVENT_FAILED: records.EventType.FAILED,
    pb.EVENT_SUSPENDED: records.EventType.SUSPENDED,
    pb.EVENT_CUSTOM: records.EventType.CUSTOM,
}

_SIGNAL_TO_WIRE = {
    records.SignalType.CANCEL: pb.SIGNAL_CANCEL,
    records.SignalType.PAUSE: pb.SIGNAL_PAUSE,
    records.SignalType.RESUME: pb.SIGNAL_RESUME,
}
_SIGNAL_FROM_WIRE = {wire: signal for signal, wire in _SIGNAL_TO_WIRE.items()}

_STATUS_TO_WIRE = {
    records.InstanceStatus.PENDING: pb.STATUS_PENDING,
    records.InstanceStatus.RUNNING: pb.STATUS_RUNNING,
    records.InstanceStatus.SUSPENDED: pb.STATUS_SUSPENDED,
    records.InstanceStatus.COMPLETED: pb.STATUS_COMPLETED,
    records.InstanceStatus.FAILED: pb.STATUS_FAILED,
    records.InstanceStatus.CANCELLED: pb.STATUS_CANCELLED,
}


def event_type(value: int) -> records.EventType:
    """Unknown numbers (1, the removed STARTED, or anything else) mean heartbeat, as prost reads them."""
    return _EVENT_TYPES.get(value, records.EventType.HEARTBEAT)


def signal_type(value: int) -> records.SignalType:
    """Unknown numbers mean cancel, as prost reads them."""
    return _SIGNAL_FROM_WIRE.get(value, records.SignalType.CANCEL)


def signal_to_wire(value: records.SignalType) -> int:
    return _SIGNAL_TO_WIRE[value]


def status_to_wire(value: records.InstanceStatus) -> int:
    return _STATUS_TO_WIRE.get(value, pb.STATUS_UNKNOWN)


def millis(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def signal_message(signal: records.Signal) -> pb.Signal:
    return pb.Signal(
        instance_id=signal.instance_id,
        signal_type=signal_to_wire(signal.signal_type),
        payload=signal.payload,
    )


def custom_signal_message(signal: records.CustomSignal) -> pb.CustomSignal:
    return pb.CustomSignal(checkpoint_id=signal.checkpoint_id, payload=signal.payload)


def require_id(request: Message) -> str:
    """The request's ``instance_id``, which must be given and, like every text
    field of the request, free of NUL."""
    if not request.instance_id:
        raise errors.ValidationError("instance_id", "instance_id is required")
    field = field_with_nul(request)
    if field is not None:
        raise errors.ValidationError(field, f"{field} must not contain NUL characters")
    return request.instance_id


def field_with_nul(request: Message) -> str | None:
    """The first text field of ``request`` containing NUL: PostgreSQL's text
    cannot store it and SQLite's string functions stop at it, so every driver
    refuses such text alike."""
    for field, value in request.ListFields():
        if field.type == field.TYPE_STRING and "\x00" in value:
            return field.name
    return None
