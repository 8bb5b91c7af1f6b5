"""Records to wire values and back: the one mapping every protocol user shares.

The instance protocol, the management protocol and the SDK number statuses
and signal types alike; their tables, the time rule and the message builders
live here once. Times on the wire are whole milliseconds since the epoch,
always rounded down.
"""

from __future__ import annotations

import datetime as dt

from runtara import records
from runtara.protocol import instance_pb2 as pb
from runtara.protocol import management_pb2 as mpb

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MILLISECOND = dt.timedelta(milliseconds=1)

STATUS_TO_WIRE = {
    records.InstanceStatus.PENDING: pb.STATUS_PENDING,
    records.InstanceStatus.RUNNING: pb.STATUS_RUNNING,
    records.InstanceStatus.SUSPENDED: pb.STATUS_SUSPENDED,
    records.InstanceStatus.COMPLETED: pb.STATUS_COMPLETED,
    records.InstanceStatus.FAILED: pb.STATUS_FAILED,
    records.InstanceStatus.CANCELLED: pb.STATUS_CANCELLED,
}
"""Both protocols number statuses alike (STATUS_UNKNOWN is 0)."""
_STATUS_FROM_WIRE = {number: status for status, number in STATUS_TO_WIRE.items()}

SIGNAL_TO_WIRE = {
    records.SignalType.CANCEL: pb.SIGNAL_CANCEL,
    records.SignalType.PAUSE: pb.SIGNAL_PAUSE,
    records.SignalType.RESUME: pb.SIGNAL_RESUME,
}
_SIGNAL_FROM_WIRE = {number: signal for signal, number in SIGNAL_TO_WIRE.items()}

_EVENT_TYPES = {
    pb.EVENT_HEARTBEAT: records.EventType.HEARTBEAT,
    pb.EVENT_COMPLETED: records.EventType.COMPLETED,
    pb.EVENT_FAILED: records.EventType.FAILED,
    pb.EVENT_SUSPENDED: records.EventType.SUSPENDED,
    pb.EVENT_CUSTOM: records.EventType.CUSTOM,
}


def millis(value: dt.datetime) -> int:
    """Whole milliseconds since the epoch, rounded down."""
    return (value - EPOCH) // _MILLISECOND


def from_millis(value: int) -> dt.datetime:
    return EPOCH + value * _MILLISECOND


def status_to_wire(status: records.InstanceStatus) -> int:
    return STATUS_TO_WIRE.get(status, pb.STATUS_UNKNOWN)


def status_from_wire(number: int) -> records.InstanceStatus | None:
    """None for STATUS_UNKNOWN and numbers this version does not know."""
    return _STATUS_FROM_WIRE.get(number)


def signal_from_wire(number: int) -> records.SignalType | None:
    """None for a number this version does not know."""
    return _SIGNAL_FROM_WIRE.get(number)


def signal_or_cancel(number: int) -> records.SignalType:
    """Unknown numbers mean cancel, as upstream's prost-based peers read them."""
    return _SIGNAL_FROM_WIRE.get(number, records.SignalType.CANCEL)


def event_type(number: int) -> records.EventType:
    """Unknown numbers (1, the removed STARTED, or anything else) mean heartbeat,
    as upstream reads them."""
    return _EVENT_TYPES.get(number, records.EventType.HEARTBEAT)


def optional(message, field: str):
    """The field's value, or None where the message leaves it out."""
    return getattr(message, field) if message.HasField(field) else None


def optional_time(message, field: str) -> dt.datetime | None:
    return from_millis(getattr(message, field)) if message.HasField(field) else None


# --- the instance protocol ----------------------------------------------------


def signal_message(signal: records.Signal) -> pb.Signal:
    return pb.Signal(
        instance_id=signal.instance_id,
        signal_type=SIGNAL_TO_WIRE[signal.signal_type],
        payload=signal.payload,
    )


def custom_signal_message(signal: records.CustomSignal) -> pb.CustomSignal:
    return pb.CustomSignal(checkpoint_id=signal.checkpoint_id, payload=signal.payload)


def checkpoint_response(outcome: records.CheckpointOutcome) -> pb.CheckpointResponse:
    reply = pb.CheckpointResponse(found=outcome.found, state=outcome.state)
    if outcome.signals.pending is not None:
        reply.pending_signal.CopyFrom(signal_message(outcome.signals.pending))
    if outcome.signals.custom is not None:
        reply.custom_signal.CopyFrom(custom_signal_message(outcome.signals.custom))
    return reply


def poll_signals_response(signals: records.Signals) -> pb.PollSignalsResponse:
    reply = pb.PollSignalsResponse()
    if signals.pending is not None:
        reply.signal.CopyFrom(signal_message(signals.pending))
    if signals.custom is not None:
        reply.custom_signal.CopyFrom(custom_signal_message(signals.custom))
    return reply


_INSTANCE_TEXTS = ("checkpoint_id", "output", "error")


def status_response(
    instance_id: str, instance: records.Instance | None, message_type=pb.GetInstanceStatusResponse
):
    """GetInstanceStatus's reply (either protocol's): an unknown instance is
    ``STATUS_UNKNOWN`` with the error "Instance not found", not an RpcError."""
    reply = message_type(instance_id=instance_id)
    if instance is None:
        reply.status = pb.STATUS_UNKNOWN
        reply.error = "Instance not found"
        return reply
    reply.status = status_to_wire(instance.status)
    _copy_given(instance, reply, _INSTANCE_TEXTS, ("started_at", "finished_at"))
    return reply


def _copy_given(record, message, fields: tuple[str, ...], times: tuple[str, ...] = ()) -> None:
    """Set on ``message`` each of ``fields`` that ``record`` gives (is not None),
    and each of ``times`` as ``<name>_ms``."""
    for name in fields:
        value = getattr(record, name)
        if value is not None:
            setattr(message, name, value)
    for name in times:
        value = getattr(record, name)
        if value is not None:
            setattr(message, f"{name}_ms", millis(value))


# --- the management protocol --------------------------------------------------


def instance_to_wire(instance: records.Instance) -> mpb.InstanceSummary:
    message = mpb.InstanceSummary(
        instance_id=instance.instance_id,
        tenant_id=instance.tenant_id,
        status=status_to_wire(instance.status),
        created_at_ms=millis(instance.created_at),
    )
    times = ("started_at", "finished_at", "last_activity_at", "sleep_until")
    _copy_given(instance, message, _INSTANCE_TEXTS, times)
    return message


def instance_from_wire(message: mpb.InstanceSummary) -> records.Instance:
    return records.Instance(
        instance_id=message.instance_id,
        tenant_id=message.tenant_id,
        status=status_from_wire(message.status) or records.InstanceStatus.PENDING,
        created_at=from_millis(message.created_at_ms),
        checkpoint_id=optional(message, "checkpoint_id"),
        started_at=optional_time(message, "started_at_ms"),
        finished_at=optional_time(message, "finished_at_ms"),
        output=optional(message, "output"),
        error=optional(message, "error"),
        sleep_until=optional_time(message, "sleep_until_ms"),
        last_activity_at=optional_time(message, "last_activity_at_ms"),
    )


_LAUNCH_TIMES = ("next_launch_at", "claimed_until", "stop_deadline", "launched_at")
"""Sent as ``<name>_ms``."""
_LAUNCH_TEXTS = ("claimed_by", "host", "pid", "last_exit", "resumed_from", "origin_instance")
_LAUNCH_TEXTS += ("origin_checkpoint", "parent_instance", "on_parent_cancel")


def launch_to_wire(launch: records.Launch) -> mpb.Launch:
    """A launch without its input (which may be large)."""
    message = mpb.Launch(
        spec=launch.spec,
        max_failures=launch.max_failures,
        attempt=launch.attempt,
        failures=launch.failures,
        queue=launch.queue,
        priority=launch.priority,
    )
    _copy_given(launch, message, ("key", *_LAUNCH_TEXTS), _LAUNCH_TIMES)
    return message


def launch_from_wire(instance_id: str, message: mpb.Launch) -> records.Launch:
    return records.Launch(
        instance_id=instance_id,
        spec=message.spec,
        input=None,
        max_failures=message.max_failures,
        attempt=message.attempt,
        failures=message.failures,
        **{name: optional_time(message, f"{name}_ms") for name in _LAUNCH_TIMES},
        **{name: optional(message, name) for name in _LAUNCH_TEXTS},
        # A server of a version before queues sends none: its launches are all
        # in the default queue.
        queue=message.queue or records.DEFAULT_QUEUE,
        key=optional(message, "key"),
        priority=message.priority,
    )


def event_to_wire(event: records.Event) -> mpb.Event:
    message = mpb.Event(
        id=event.id or 0, event_type=event.event_type.value, created_at_ms=millis(event.created_at)
    )
    _copy_given(event, message, ("checkpoint_id", "payload", "subtype"))
    return message


def event_from_wire(instance_id: str, message: mpb.Event) -> records.Event:
    return records.Event(
        instance_id=instance_id,
        event_type=records.EventType(message.event_type),
        created_at=from_millis(message.created_at_ms),
        checkpoint_id=optional(message, "checkpoint_id"),
        payload=optional(message, "payload"),
        subtype=optional(message, "subtype"),
        id=message.id,
    )


def checkpoint_info_to_wire(info: records.CheckpointInfo) -> mpb.CheckpointSummary:
    return mpb.CheckpointSummary(
        checkpoint_id=info.checkpoint_id,
        instance_id=info.instance_id,
        created_at_ms=millis(info.created_at),
        data_size_bytes=info.size,
    )


def checkpoint_info_from_wire(message: mpb.CheckpointSummary) -> records.CheckpointInfo:
    return records.CheckpointInfo(
        message.instance_id,
        message.checkpoint_id,
        message.data_size_bytes,
        from_millis(message.created_at_ms),
    )


def pending_signal_to_wire(signal: records.Signal) -> mpb.PendingSignal:
    return mpb.PendingSignal(
        signal_type=SIGNAL_TO_WIRE[signal.signal_type],
        payload=signal.payload,
        created_at_ms=millis(signal.created_at),
    )


def pending_signal_from_wire(instance_id: str, message: mpb.PendingSignal) -> records.Signal:
    return records.Signal(
        instance_id,
        signal_or_cancel(message.signal_type),
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


def checkpoint_filter_from_wire(message) -> records.CheckpointFilter:
    return records.CheckpointFilter(
        checkpoint_id=optional(message, "checkpoint_id"),
        created_after=optional_time(message, "created_after_ms"),
        created_before=optional_time(message, "created_before_ms"),
    )


def checkpoint_filter_to_wire(wanted: records.CheckpointFilter, message) -> None:
    if wanted.checkpoint_id is not None:
        message.checkpoint_id = wanted.checkpoint_id
    if wanted.created_after is not None:
        message.created_after_ms = millis(wanted.created_after)
    if wanted.created_before is not None:
        message.created_before_ms = millis(wanted.created_before)


def event_filter_from_wire(message: mpb.ListEventsRequest) -> records.EventFilter:
    """Raises ValueError for an event type this version does not know."""
    kind = optional(message, "event_type")
    return records.EventFilter(
        event_type=None if kind is None else records.EventType(kind),
        subtype=optional(message, "subtype"),
        created_after=optional_time(message, "created_after_ms"),
        created_before=optional_time(message, "created_before_ms"),
        payload_contains=optional(message, "payload_contains"),
    )


def event_filter_to_wire(wanted: records.EventFilter, message: mpb.ListEventsRequest) -> None:
    if wanted.event_type is not None:
        message.event_type = wanted.event_type.value
    for field in ("subtype", "payload_contains"):
        value = getattr(wanted, field)
        if value is not None:
            setattr(message, field, value)
    if wanted.created_after is not None:
        message.created_after_ms = millis(wanted.created_after)
    if wanted.created_before is not None:
        message.created_before_ms = millis(wanted.created_before)


# --- queues -------------------------------------------------------------------

_QUEUE_FIELDS = (
    ("concurrency", "concurrency"),
    ("per_key", "per_key"),
    ("rate_limit", "rate_limit"),
    ("rate_period_seconds", "rate_period"),
)
QUEUE_CLEARABLE = ("concurrency", "per_key", "rate")
"""The names a SetQueueRequest's ``clear`` may list."""


def queue_to_wire(queue: records.Queue) -> mpb.Queue:
    message = mpb.Queue(name=queue.name, paused=queue.paused)
    for field, name in _QUEUE_FIELDS:
        value = getattr(queue, name)
        if value is not None:
            setattr(message, field, value)
    return message


def queue_from_wire(message: mpb.Queue) -> records.Queue:
    return records.Queue(
        message.name,
        paused=message.paused,
        **{name: optional(message, field) for field, name in _QUEUE_FIELDS},
    )


def queue_view_to_wire(view: records.QueueView) -> mpb.QueueView:
    figures = view.figures
    return mpb.QueueView(
        queue=queue_to_wire(view.queue),
        figures=mpb.QueueFigures(running=figures.running, due=figures.due, later=figures.later),
    )


def queue_view_from_wire(message: mpb.QueueView) -> records.QueueView:
    figures = message.figures
    return records.QueueView(
        queue_from_wire(message.queue),
        records.QueueFigures(figures.running, figures.due, figures.later),
    )


def queue_changes_to_wire(
    name: str,
    *,
    concurrency: int | None = records.UNCHANGED,
    per_key: int | None = records.UNCHANGED,
    rate: tuple[int, float] | None = records.UNCHANGED,
    paused: bool = records.UNCHANGED,
) -> mpb.SetQueueRequest:
    """A SetQueueRequest for the arguments of :meth:`runtara.admin.base.Admin.set_queue`:
    a limit given is set, None puts it in ``clear``, UNCHANGED leaves it out."""
    message = mpb.SetQueueRequest(name=name)
    for field, value in (("concurrency", concurrency), ("per_key", per_key)):
        if value is None:
            message.clear.append(field)
        elif value is not records.UNCHANGED:
            setattr(message, field, value)
    if rate is None:
        message.clear.append("rate")
    elif rate is not records.UNCHANGED:
        message.rate_limit, message.rate_period_seconds = rate
    if paused is not records.UNCHANGED:
        message.paused = paused
    return message


def queue_changes_from_wire(message: mpb.SetQueueRequest) -> dict[str, object]:
    """The keyword arguments of :func:`runtara.storage.queues.set_queue` a
    SetQueueRequest asks for (the limits it leaves alone are not among them).

    Raises ValueError for a request that cannot be read one way: an unknown name
    in ``clear``, a limit both set and cleared, half of a rate.
    """
    clear = set(message.clear)
    unknown = sorted(clear - set(QUEUE_CLEARABLE))
    if unknown:
        raise ValueError(
            f"cannot clear {', '.join(unknown)}: a queue's limits are {', '.join(QUEUE_CLEARABLE)}"
        )
    changes: dict[str, object] = {}
    for field in ("concurrency", "per_key"):
        if message.HasField(field):
            if field in clear:
                raise ValueError(f"{field} is both set and cleared")
            changes[field] = getattr(message, field)
        elif field in clear:
            changes[field] = None
    has_limit, has_period = message.HasField("rate_limit"), message.HasField("rate_period_seconds")
    if has_limit != has_period:
        raise ValueError("a rate is rate_limit and rate_period_seconds together")
    if has_limit:
        if "rate" in clear:
            raise ValueError("rate is both set and cleared")
        changes["rate"] = (message.rate_limit, message.rate_period_seconds)
    elif "rate" in clear:
        changes["rate"] = None
    if message.HasField("paused"):
        changes["paused"] = message.paused
    return changes


# --- schedules ----------------------------------------------------------------

_SCHEDULE_OPTIONAL = (
    ("cron", "cron"),
    ("every_seconds", "every"),
    ("input", "input"),
    ("last_instance_id", "last_instance_id"),
)


def schedule_to_wire(schedule: records.Schedule) -> mpb.Schedule:
    message = mpb.Schedule(
        name=schedule.name,
        timezone=schedule.timezone,
        overlap=schedule.overlap,
        catch_up=schedule.catch_up,
        tenant_id=schedule.tenant_id,
        spec=schedule.spec,
        created_at_ms=millis(schedule.created_at),
        next_tick_at_ms=millis(schedule.next_tick_at),
        paused=schedule.paused,
        ticks=schedule.ticks,
        skipped=schedule.skipped,
    )
    for field, name in _SCHEDULE_OPTIONAL:
        value = getattr(schedule, name)
        if value is not None:
            setattr(message, field, value)
    _copy_given(schedule, message, (), ("last_tick_at",))
    return message


def schedule_from_wire(message: mpb.Schedule) -> records.Schedule:
    return records.Schedule(
        name=message.name,
        timezone=message.timezone,
        overlap=message.overlap,
        catch_up=message.catch_up,
        tenant_id=message.tenant_id,
        spec=message.spec,
        created_at=from_millis(message.created_at_ms),
        next_tick_at=from_millis(message.next_tick_at_ms),
        paused=message.paused,
        last_tick_at=optional_time(message, "last_tick_at_ms"),
        ticks=message.ticks,
        skipped=message.skipped,
        **{name: optional(message, field) for field, name in _SCHEDULE_OPTIONAL},
    )
