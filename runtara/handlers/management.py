"""The management protocol's operations (upstream's messages, plus our additions).

Each operator operation is declared once, as an :class:`Operator`: the work on
a storage, which :class:`runtara.admin.local.LocalAdmin` and the server both
run, and how its call and its result travel as a management request and reply,
which :class:`runtara.admin.remote.RemoteAdmin` and the server both use. The
operations only a server can answer (its health and counters, an instance's
status for upstream's clients, a workflow's children) are plain handlers.

Served on their own port when ``--management-addr`` is set. Refusals an
operator can act on (unknown or finished instance, missing checkpoint id) are
answered in-band (``success=false``, ``found=false`` or an empty list); storage
failures are ``RpcResponse.error`` with the code ``<OPERATION>_ERROR``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import attrs
from google.protobuf.message import Message

from runtara import __version__, errors, limits, mapping, records
from runtara.credentials import Role
from runtara.handlers.services import Services
from runtara.launcher import logs
from runtara.launcher import spec as specs
from runtara.protocol import management_pb2 as mpb
from runtara.storage import launches, listing, operations, queues, schedules
from runtara.storage.listing import InstancePage

DEFAULT_LIMIT = 100

Arguments = dict[str, Any]


@attrs.frozen
class Operator:
    """One operator operation. ``run(place, **arguments)`` does it, where ``place``
    has ``storage``, the clock ``now()`` and the logs' ``runs_dir`` (the server's
    :class:`Services`, or a LocalAdmin)."""

    field: str
    """Its ``RpcRequest`` and ``RpcResponse`` oneof field."""
    run: Callable[..., Any]
    request: Callable[..., Message] | None = None
    """Client side: the call's arguments as the wire request; None: each argument
    is the request's field of its name."""
    arguments: Callable[[Any], Arguments] | None = None
    """Server side: the wire request as the call's arguments (a ValueError for a
    request that means nothing is refused); None: the request's fields by name."""
    reply: Callable[[Any, Arguments], Message] | None = None
    """Server side: the result as the wire reply; None: the result is the reply's
    ``returns`` fields."""
    result: Callable[[Any, Arguments], Any] | None = None
    """Client side: the wire reply as the result; None: its ``returns`` fields."""
    returns: tuple[str, ...] = ()
    """The reply's fields the result is (a tuple of them when more than one)."""
    role: Role = Role.READ
    refused: Callable[[Any], Message] | None = None
    """Server side: the reply to a refused request, where it is not ``success=false``."""
    asks_for_instance: bool = False
    """The reply to an unknown instance is an empty one (upstream's wire): the
    client asks for the instance first, to refuse it as the local side does."""

    def _reply_type(self) -> type[Message]:
        return type(getattr(mpb.RpcResponse(), self.field))

    def __call__(self, request: Message, services: Services) -> mpb.RpcResponse:
        """The server's handler of the operation."""
        try:
            try:
                arguments = (self.arguments or _fields)(request)
            except ValueError as problem:
                raise errors.OperationRefused(f"{self.field}: {problem}") from None
            result = self.run(services, **arguments)
        except (errors.OperationRefused, errors.ConfigError) as refusal:
            if self.refused is not None:
                reply = self.refused(request)
            elif _answers_success(self._reply_type()):
                reply = self._reply_type()(success=False, error=str(refusal))
            else:
                raise
        else:
            if self.reply is not None:
                reply = self.reply(result, arguments)
            else:
                values = result if len(self.returns) > 1 else [result] * len(self.returns)
                reply = _present(self._reply_type(), **dict(zip(self.returns, values, strict=True)))
            if _answers_success(reply):
                reply.success = True
        return mpb.RpcResponse(**{self.field: reply})

    def request_of(self, arguments: Arguments) -> Message:
        """The client's request for a call."""
        if self.request is not None:
            return self.request(**arguments)
        return _present(type(getattr(mpb.RpcRequest(), self.field)), **arguments)

    def outcome(self, reply: Message, arguments: Arguments) -> Any:
        """The client's result of a reply; OperationRefused for a refusal."""
        if _answers_success(reply) and not reply.success:
            raise errors.OperationRefused(reply.error)
        if self.result is not None:
            return self.result(reply, arguments)
        values = tuple(_fields(reply)[name] for name in self.returns)
        if len(values) > 1:
            return values
        return values[0] if values else None


def _answers_success(message: Message) -> bool:
    return "success" in message.DESCRIPTOR.fields_by_name


def _present(message_type: type[Message], **fields) -> Message:
    """A message with the fields that are not None (None leaves an optional one out)."""
    return message_type(**{name: value for name, value in fields.items() if value is not None})


def _fields(message: Message, **renamed: str) -> Arguments:
    """The message's fields by name (``renamed``: wire name=argument name); None
    for an optional one it leaves out."""
    return {
        renamed.get(field.name, field.name): getattr(message, field.name)
        if not field.has_presence or message.HasField(field.name)
        else None
        for field in message.DESCRIPTOR.fields
    }


def _on(place, work, *, write: bool = True):
    """``work(tx, now)`` in one transaction, ``now`` read from ``place``'s clock first."""
    now = place.now()
    return place.storage.run(lambda tx: work(tx, now), write=write)


def _limit(value: int) -> int:
    return value or DEFAULT_LIMIT


def _input(payload: bytes | None, absent=None):
    return absent if payload is None else specs.checked_input(payload)


def _respec(env: dict[str, str]):
    return (lambda stored: specs.with_env(stored, env)) if env else None


def _relaunch_request(message_type: type[Message]):
    """A retry's or a fork's request: ``env`` as NAME=VALUE texts, ``payload`` as ``input``."""
    return lambda env, payload, **fields: _present(
        message_type,
        env=[f"{name}={value}" for name, value in env.items()],
        input=payload,
        **fields,
    )


def _relaunch_arguments(request) -> Arguments:
    """A retry's or a fork's arguments, from the wire."""
    return {**_fields(request, input="payload"), "env": specs.parse_env(list(request.env))}


def _sendable(name: str, payload: bytes) -> bytes:
    limits.check_signal_payload(name, len(payload))  # a larger request is never sent
    return payload


# --- signals ----------------------------------------------------------------------


def _signal_type(number: int) -> records.SignalType:
    signal_type = mapping.signal_from_wire(number)
    if signal_type is None:
        raise errors.OperationRefused(f"Unknown signal type: {number}")
    return signal_type


SEND_SIGNAL = Operator(
    "send_signal",
    lambda place, instance_id, signal_type, payload: _on(
        place, lambda tx, now: operations.send_signal(tx, instance_id, signal_type, payload, now)
    ),
    lambda instance_id, signal_type, payload: mpb.SendSignalRequest(
        instance_id=instance_id,
        signal_type=mapping.SIGNAL_TO_WIRE[signal_type],
        payload=_sendable(instance_id, payload),
    ),
    lambda request: {**_fields(request), "signal_type": _signal_type(request.signal_type)},
    role=Role.OPERATE,
)

SEND_CUSTOM_SIGNAL = Operator(
    "send_custom_signal",
    lambda place, instance_id, checkpoint_id, payload: _on(
        place,
        lambda tx, now: operations.send_custom_signal(tx, instance_id, checkpoint_id, payload, now),
    ),
    lambda instance_id, checkpoint_id, payload: mpb.SendCustomSignalRequest(
        instance_id=instance_id,
        checkpoint_id=checkpoint_id,
        payload=_sendable(checkpoint_id, payload),
    ),
    role=Role.OPERATE,
)

# --- reading instances --------------------------------------------------------------


def _instances_request(*, status, **query):
    request = _present(mpb.ListInstancesRequest, **query)
    if status is not None:
        request.status = mapping.status_to_wire(status)
    return request


def _instances_arguments(request):
    status = mapping.optional(request, "status")
    if status is not None and mapping.status_from_wire(status) is None:
        raise errors.OperationRefused(f"Unknown status: {status}")  # RpcResponse.error
    return {
        **_fields(request),
        "status": None if status is None else mapping.status_from_wire(status),
        "limit": _limit(request.limit),
    }


LIST_INSTANCES = Operator(
    "list_instances",
    lambda place, **query: _on(
        place, lambda tx, _: listing.list_instances(tx, **query), write=False
    ),
    _instances_request,
    _instances_arguments,
    reply=lambda page, _: mpb.ListInstancesResponse(
        instances=[mapping.instance_to_wire(instance) for instance in page.items],
        total_count=page.total,
        next_cursor=page.next_cursor,
        previous_cursor=page.previous_cursor,
    ),
    result=lambda reply, _: InstancePage(
        [mapping.instance_from_wire(m) for m in reply.instances],
        reply.total_count,
        mapping.optional(reply, "next_cursor"),
        mapping.optional(reply, "previous_cursor"),
    ),
)


def _details_to_wire(details, _):
    if details is None:
        return mpb.GetInstanceResponse(found=False)
    reply = mpb.GetInstanceResponse(
        found=True,
        instance=mapping.instance_to_wire(details.instance),
        custom_signals=[mapping.custom_signal_to_wire(s) for s in details.custom_signals],
        recent_events=[mapping.event_to_wire(e) for e in details.recent_events],
        children=details.children,
        wait_reason=details.wait_reason,
    )
    if details.pending_signal is not None:
        reply.pending_signal.CopyFrom(mapping.pending_signal_to_wire(details.pending_signal))
    if details.launch is not None:
        reply.launch.CopyFrom(mapping.launch_to_wire(details.launch))
    return reply


def _details_from_wire(reply, arguments):
    if not reply.found:
        return None
    instance_id = arguments["instance_id"]
    return records.InstanceDetails(
        mapping.instance_from_wire(reply.instance),
        mapping.pending_signal_from_wire(instance_id, reply.pending_signal)
        if reply.HasField("pending_signal")
        else None,
        [mapping.custom_signal_from_wire(instance_id, m) for m in reply.custom_signals],
        [mapping.event_from_wire(instance_id, m) for m in reply.recent_events],
        mapping.launch_from_wire(instance_id, reply.launch) if reply.HasField("launch") else None,
        mapping.optional(reply, "wait_reason"),
        list(reply.children),
    )


GET_INSTANCE = Operator(
    "get_instance",
    lambda place, instance_id, recent_events: _on(
        place,
        lambda tx, now: operations.instance_details(tx, instance_id, recent_events, now),
        write=False,
    ),
    reply=_details_to_wire,
    result=_details_from_wire,
)


def _instance_page(
    field, read, wanted, wanted_to_wire, wanted_from_wire, item_to_wire, item_from_wire
):
    """An operation that reads one page of an instance's records, those ``wanted``
    (a filter) only; an unknown instance or filter is an empty page on the wire."""
    request_type = type(getattr(mpb.RpcRequest(), field))
    reply_type = type(getattr(mpb.RpcResponse(), field))
    items = reply_type.DESCRIPTOR.fields[0].name  # the records come first

    def request(*, instance_id, limit, offset, **wanted_filter):
        message = request_type(instance_id=instance_id, limit=limit, offset=offset)
        wanted_to_wire(*wanted_filter.values(), message)
        return message

    def reply(page, arguments):
        message = reply_type(total_count=page.total, **{items: map(item_to_wire, page.items)})
        for echoed in {"limit", "offset"} & set(reply_type.DESCRIPTOR.fields_by_name):
            setattr(message, echoed, arguments[echoed])
        return message

    return Operator(
        field,
        lambda place, instance_id, limit, offset, **wanted_filter: _on(
            place,
            lambda tx, _: read(
                tx, instance_id, *wanted_filter.values(), limit=limit, offset=offset
            ),
            write=False,
        ),
        request,
        lambda message: {
            "instance_id": message.instance_id,
            wanted: wanted_from_wire(message),
            "limit": _limit(message.limit),
            "offset": message.offset,
        },
        reply=reply,
        result=lambda message, arguments: records.Page(
            [item_from_wire(arguments["instance_id"], m) for m in getattr(message, items)],
            message.total_count,
        ),
        refused=lambda message: reply(
            records.Page([], 0), {"limit": _limit(message.limit), "offset": message.offset}
        ),
        asks_for_instance=True,
    )


LIST_CHECKPOINTS = _instance_page(
    "list_checkpoints",
    operations.list_checkpoints,
    "checkpoint_filter",
    mapping.checkpoint_filter_to_wire,
    mapping.checkpoint_filter_from_wire,
    mapping.checkpoint_info_to_wire,
    lambda _, message: mapping.checkpoint_info_from_wire(message),
)

LIST_EVENTS = _instance_page(
    "list_events",
    operations.list_events,
    "event_filter",
    mapping.event_filter_to_wire,
    mapping.event_filter_from_wire,
    mapping.event_to_wire,
    mapping.event_from_wire,
)


def _checkpoint_to_wire(checkpoint, arguments):
    reply = mpb.GetCheckpointResponse(**arguments)
    if checkpoint is not None:
        reply.found = True
        reply.created_at_ms = mapping.millis(checkpoint.created_at)
        reply.data = checkpoint.state
    return reply


GET_CHECKPOINT = Operator(
    "get_checkpoint",
    lambda place, instance_id, checkpoint_id: _on(
        place, lambda tx, _: operations.read_checkpoint(tx, instance_id, checkpoint_id), write=False
    ),
    reply=_checkpoint_to_wire,
    result=lambda reply, arguments: (
        records.Checkpoint(
            **arguments, state=reply.data, created_at=mapping.from_millis(reply.created_at_ms)
        )
        if reply.found
        else None
    ),
    refused=lambda request: _checkpoint_to_wire(None, _fields(request)),
    asks_for_instance=True,
)


# --- launches -----------------------------------------------------------------------


def _start_instance(place, instance_id, tenant_id, spec, payload, *, replace, not_before, delay):
    operations.require_id(instance_id, "instance_id")
    operations.require_id(tenant_id, "tenant_id")
    launch = specs.checked(spec)
    payload = _input(payload)
    return _on(
        place,
        lambda tx, now: launches.start_instance(
            tx,
            instance_id,
            tenant_id,
            launch.to_json(),
            payload,
            launch.max_failures,
            now,
            replace=replace,
            queue=launch.queue,
            key=launch.key,
            priority=launch.priority,
            not_before=launches.due_time(now, not_before, delay),
        ),
    )


START_INSTANCE = Operator(
    "start_instance",
    _start_instance,
    lambda spec, payload, not_before, delay, **fields: _present(
        mpb.StartInstanceRequest,
        spec=spec.to_json(),
        input=payload,
        not_before_ms=None if not_before is None else mapping.millis(not_before),
        # A delay is counted from the server's clock; a past one means at once.
        delay_ms=None if delay is None else max(0, round(delay * 1000)),
        **fields,
    ),
    lambda request: {
        **_fields(request, input="payload", not_before_ms="not_before", delay_ms="delay"),
        "spec": specs.LaunchSpec.from_json(request.spec),
        "not_before": mapping.optional_time(request, "not_before_ms"),
        "delay": request.delay_ms / 1000 if request.HasField("delay_ms") else None,
    },
    returns=("deduplicated",),
    role=Role.OPERATE,
)


def _retry_instance(place, instance_id, env, payload):
    operations.require_id(instance_id, "instance_id")
    payload = _input(payload, records.UNCHANGED)
    instance = _on(
        place,
        lambda tx, now: launches.retry(tx, instance_id, now, respec=_respec(env), payload=payload),
    )
    return instance.checkpoint_id


RETRY_INSTANCE = Operator(
    "retry_instance",
    _retry_instance,
    _relaunch_request(mpb.RetryInstanceRequest),
    _relaunch_arguments,
    returns=("checkpoint_id",),
    role=Role.OPERATE,
)


def _fork_instance(place, instance_id, checkpoint_id, new_id, env, payload):
    operations.require_id(instance_id, "instance_id")
    new_id = launches.fork_id(instance_id) if new_id is None else new_id
    operations.require_id(new_id, "new_id")
    if checkpoint_id is not None:
        operations.require_id(checkpoint_id, "checkpoint_id")
    payload = _input(payload, records.UNCHANGED)
    forked_at = _on(
        place,
        lambda tx, now: launches.fork(
            tx, instance_id, checkpoint_id, new_id, now, respec=_respec(env), payload=payload
        ),
    )
    return new_id, forked_at


FORK_INSTANCE = Operator(
    "fork_instance",
    _fork_instance,
    _relaunch_request(mpb.ForkInstanceRequest),
    _relaunch_arguments,
    returns=("instance_id", "checkpoint_id"),
    role=Role.OPERATE,
)


def _stop_instance(place, instance_id, grace=0.0, give_up=None):
    """Ask the instance to stop within ``grace`` seconds, or (``give_up``, the
    reason) record it cancelled when a stop did not end it."""
    if give_up is not None:
        return _on(place, lambda tx, now: launches.cancel_unanswered(tx, instance_id, give_up, now))
    grace = dt.timedelta(seconds=grace)
    return _on(place, lambda tx, now: launches.request_stop(tx, instance_id, grace, now))


STOP_INSTANCE = Operator(
    "stop_instance",
    _stop_instance,
    lambda instance_id, grace=0.0, give_up=None: mpb.StopInstanceRequest(
        instance_id=instance_id,
        grace_ms=round(grace * 1000),
        give_up=give_up is not None,
        reason=give_up or "",
    ),
    lambda request: {
        "instance_id": request.instance_id,
        "grace": request.grace_ms / 1000,
        "give_up": (request.reason or "stopped") if request.give_up else None,
    },
    returns=("launched",),
    role=Role.OPERATE,
)


def _read_log(place, instance_id, stream, offset):
    if stream not in logs.STREAMS:
        raise errors.OperationRefused(f"no log stream {stream!r} (it is one of {logs.STREAMS})")
    if place.runs_dir is None:
        return b"", 0
    return logs.read_from(logs.log_path(place.runs_dir, instance_id, stream), offset)


READ_LOG = Operator(
    "read_log",
    _read_log,
    returns=("data", "next_offset"),
)

# --- queues and schedules -----------------------------------------------------------

SET_QUEUE = Operator(
    "set_queue",
    lambda place, name, **changes: _on(place, lambda tx, _: queues.set_queue(tx, name, **changes)),
    mapping.queue_changes_to_wire,
    lambda request: {"name": request.name, **mapping.queue_changes_from_wire(request)},
    reply=lambda queue, _: mpb.SetQueueResponse(queue=mapping.queue_to_wire(queue)),
    result=lambda reply, _: mapping.queue_from_wire(reply.queue),
    role=Role.OPERATE,
)

LIST_QUEUES = Operator(
    "list_queues",
    lambda place: _on(place, queues.list_queues, write=False),
    reply=lambda views, _: mpb.ListQueuesResponse(
        queues=[mapping.queue_view_to_wire(view) for view in views]
    ),
    result=lambda reply, _: [mapping.queue_view_from_wire(view) for view in reply.queues],
)


def _add_schedule(place, name, *, tenant_id, spec, payload, **options):
    operations.require_id(tenant_id, "tenant_id")
    spec, payload = specs.checked(spec).to_json(), _input(payload)
    return _on(
        place,
        lambda tx, now: schedules.add(
            tx, name, tenant_id=tenant_id, spec=spec, payload=payload, now=now, **options
        ),
    )


ADD_SCHEDULE = Operator(
    "add_schedule",
    _add_schedule,
    lambda every, spec, payload, **fields: _present(
        mpb.AddScheduleRequest, every_seconds=every, spec=spec.to_json(), input=payload, **fields
    ),
    lambda request: {
        **_fields(request, every_seconds="every", input="payload"),
        "spec": specs.LaunchSpec.from_json(request.spec),
    },
    reply=lambda schedule, _: mpb.AddScheduleResponse(schedule=mapping.schedule_to_wire(schedule)),
    result=lambda reply, _: mapping.schedule_from_wire(reply.schedule),
    role=Role.OPERATE,
)

LIST_SCHEDULES = Operator(
    "list_schedules",
    lambda place: _on(place, lambda tx, _: tx.list_schedules(), write=False),
    reply=lambda found, _: mpb.ListSchedulesResponse(
        schedules=[mapping.schedule_to_wire(schedule) for schedule in found]
    ),
    result=lambda reply, _: [mapping.schedule_from_wire(s) for s in reply.schedules],
)


def _change_schedule(place, name, action):
    """Pause, resume (the schedule as it now is), remove (None) or trigger (the
    started instance's id) schedule ``name``; ``action`` is the wire's enum."""
    if action in (mpb.SCHEDULE_PAUSE, mpb.SCHEDULE_RESUME):
        paused = action == mpb.SCHEDULE_PAUSE
        return _on(place, lambda tx, now: schedules.set_paused(tx, name, paused, now))
    if action == mpb.SCHEDULE_REMOVE:
        if not _on(place, lambda tx, _: schedules.remove(tx, name)):
            raise errors.OperationRefused(f"Schedule '{name}' not found")
        return None
    if action == mpb.SCHEDULE_TRIGGER:
        return _on(place, lambda tx, now: schedules.trigger(tx, name, now))
    raise errors.OperationRefused(f"Unknown schedule action: {action}")


def _schedule_change_from_wire(reply, arguments):
    if arguments["action"] == mpb.SCHEDULE_TRIGGER:
        return reply.instance_id
    if arguments["action"] == mpb.SCHEDULE_REMOVE:
        return None
    return mapping.schedule_from_wire(reply.schedule)


CHANGE_SCHEDULE = Operator(
    "change_schedule",
    _change_schedule,
    reply=lambda changed, _: mpb.ChangeScheduleResponse(
        schedule=mapping.schedule_to_wire(changed)
        if isinstance(changed, records.Schedule)
        else None,
        instance_id=changed if isinstance(changed, str) else None,
    ),
    result=_schedule_change_from_wire,
    role=Role.OPERATE,
)

OPERATORS = (
    SEND_SIGNAL,
    SEND_CUSTOM_SIGNAL,
    LIST_INSTANCES,
    GET_INSTANCE,
    LIST_CHECKPOINTS,
    GET_CHECKPOINT,
    LIST_EVENTS,
    START_INSTANCE,
    STOP_INSTANCE,
    READ_LOG,
    RETRY_INSTANCE,
    FORK_INSTANCE,
    SET_QUEUE,
    LIST_QUEUES,
    ADD_SCHEDULE,
    LIST_SCHEDULES,
    CHANGE_SCHEDULE,
)
"""The operator operations, which the admin tools carry out locally or remotely."""

# --- what only a server answers ---------------------------------------------------


def health_check(request: mpb.HealthCheckRequest, services: Services) -> mpb.RpcResponse:
    """Healthy when the storage answers and accepts writes; the reason otherwise."""
    problem = services.storage_health.problem
    if problem is None:
        try:
            services.storage.check()
        except errors.StorageError as error:
            problem = str(error)
    if problem is not None:
        return mpb.RpcResponse(
            health_check=mpb.HealthCheckResponse(
                healthy=False, version=__version__, error=f"storage: {problem}"
            )
        )
    return mpb.RpcResponse(
        health_check=mpb.HealthCheckResponse(
            healthy=True,
            version=__version__,
            uptime_ms=int((time.monotonic() - services.started) * 1000),
            active_instances=services.storage.run(operations.count_active, write=False),
        )
    )


def get_instance_status(
    request: mpb.GetInstanceStatusRequest, services: Services
) -> mpb.RpcResponse:
    instance = services.storage.run(lambda tx: tx.get_instance(request.instance_id), write=False)
    reply = mapping.status_response(request.instance_id, instance, mpb.GetInstanceStatusResponse)
    return mpb.RpcResponse(get_instance_status=reply)


def get_stats(request: mpb.GetStatsRequest, services: Services) -> mpb.RpcResponse:
    return mpb.RpcResponse(get_stats=mpb.GetStatsResponse(counters=dict(services.counters())))


def start_child(request: mpb.StartChildRequest, services: Services) -> mpb.RpcResponse:
    """Start a child of a live instance (see :func:`launches.start_child`)."""
    try:
        operations.require_id(request.parent_id, "parent_id")
        operations.require_id(request.child_id, "child_id")
        env = specs.parse_env(list(request.env))
        payload = _input(mapping.optional(request, "input"))
        now = services.now()
        deduplicated = services.storage.run(
            lambda tx: launches.start_child(
                tx,
                request.parent_id,
                request.child_id,
                list(request.command) or None,
                env,
                payload,
                request.on_parent_cancel or "cancel",
                now,
                checked=lambda text: specs.checked(specs.LaunchSpec.from_json(text)).to_json(),
            )
        )
    except (errors.OperationRefused, errors.ConfigError) as refusal:
        return mpb.RpcResponse(
            start_child=mpb.StartChildResponse(success=False, error=str(refusal))
        )
    return mpb.RpcResponse(
        start_child=mpb.StartChildResponse(success=True, deduplicated=deduplicated)
    )


def get_child(request: mpb.GetChildRequest, services: Services) -> mpb.RpcResponse:
    """A child's status, output and error; not found for an instance that is not
    ``parent_id``'s child."""

    def read(tx):
        launch = tx.get_launch(request.child_id)
        if launch is None or launch.parent_instance != request.parent_id:
            return None
        return tx.get_instance(request.child_id)

    instance = services.storage.run(read, write=False) if request.parent_id else None
    if instance is None:
        return mpb.RpcResponse(get_child=mpb.GetChildResponse(found=False))
    reply = mpb.GetChildResponse(found=True, status=mapping.status_to_wire(instance.status))
    if instance.output is not None:
        reply.output = instance.output
    if instance.error is not None:
        reply.error = instance.error
    return mpb.RpcResponse(get_child=reply)


SERVER_ONLY = (
    ("health_check", health_check, Role.READ),
    ("get_instance_status", get_instance_status, Role.READ),
    ("get_stats", get_stats, Role.READ),
    ("start_child", start_child, Role.OPERATE),
    ("get_child", get_child, Role.READ),
)
"""The operations a LocalAdmin has no counterpart of: the server's health and
counters, and what workflows (not operators) ask."""
