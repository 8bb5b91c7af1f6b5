"""Conversions between protobuf values and storage records (upstream spec 3.1, 9.7)."""

from __future__ import annotations

import datetime as dt

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


def require_id(value: str, field: str = "instance_id") -> str:
    if not value:
        raise errors.ValidationError(field, f"{field} is required")
    if "\x00" in value:
        # Neither PostgreSQL's text nor SQLite's string functions handle NUL.
        raise errors.ValidationError(field, f"{field} must not contain NUL characters")
    return value
