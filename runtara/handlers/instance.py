"""The instance protocol's ten operations (README: Protocol behaviour).

Each handler validates the decoded request, runs one storage operation (the
rules are in :mod:`runtara.storage.operations`) and returns the reply message,
None for the three operations that answer with an empty FIN, or
:class:`SleepStarted` for a Sleep whose reply is due later. ``registration``
is the registration the requesting process holds, when the server knows it
(see :mod:`runtara.server.core`); a superseded one is refused.
"""

from __future__ import annotations

import datetime as dt
import logging

import attrs
from google.protobuf.message import Message

from runtara import errors, limits, mapping, metrics, records
from runtara.handlers.services import Services
from runtara.protocol import instance_pb2 as pb

logger = logging.getLogger(__name__)

_LIFECYCLE_EVENTS = (
    records.EventType.COMPLETED,
    records.EventType.FAILED,
    records.EventType.SUSPENDED,
)
"""The events that change an instance's status, each logged once it is stored."""


def text_problem(request: Message) -> tuple[str, str] | None:
    """The first text field of ``request`` it cannot hold (NUL, or an identifier
    over its length in :data:`runtara.limits.TEXT_LIMITS`), with the reason."""
    for field, value in request.ListFields():
        if field.type == field.TYPE_STRING:
            problem = limits.text_problem(field.name, value)
            if problem is not None:
                return field.name, problem
    return None


def require_id(request: Message) -> str:
    """The request's ``instance_id``, which must be given and, like every text
    field of the request, within its limits (see :func:`text_problem`)."""
    if not request.instance_id:
        raise errors.ValidationError("instance_id", "instance_id is required")
    problem = text_problem(request)
    if problem is not None:
        raise errors.ValidationError(*problem)
    return request.instance_id


def _optional(message: Message, field: str):
    return getattr(message, field) if message.HasField(field) else None


def register_instance(
    request: pb.RegisterInstanceRequest, services: Services, registration: int | None = None
) -> pb.RpcResponse:
    """Every refusal is ``success=false`` with the reason, except a process that
    names a superseded registration (only our SDK names one): SUPERSEDED, as any
    request of it. The reply carries the registration number (our addition,
    field 20): the one named when the registered process registers again."""
    for name in ("instance_id", "tenant_id"):
        if not getattr(request, name):
            return _registration_refused(request, f"{name} is required")
    problem = text_problem(request)
    if problem is not None:
        return _registration_refused(request, problem[1])
    try:
        number = services.storage.register_instance(
            request.instance_id,
            request.tenant_id,
            _optional(request, "checkpoint_id"),
            services.now(),
            registration,
        )
    except errors.RegistrationRefused as refusal:
        return _registration_refused(request, str(refusal))
    except errors.StorageError as error:
        return _registration_refused(request, f"Failed to register instance: {error}")
    logger.info(
        "instance %r registered (tenant %r, registration %d)",
        request.instance_id,
        request.tenant_id,
        number,
        extra=_context(request.instance_id, "register_instance", "registered", request.tenant_id),
    )
    return pb.RpcResponse(
        register_instance=pb.RegisterInstanceResponse(success=True, registration=number)
    )


def _registration_refused(request: pb.RegisterInstanceRequest, reason: str) -> pb.RpcResponse:
    logger.info(
        "register_instance for instance %r refused: %s",
        request.instance_id,
        reason,
        extra=_context(
            request.instance_id or None, "register_instance", "refused", request.tenant_id or None
        ),
    )
    return pb.RpcResponse(
        register_instance=pb.RegisterInstanceResponse(success=False, error=reason)
    )


def _context(
    instance_id: str | None, operation: str, action: str, tenant: str | None = None
) -> dict[str, str | None]:
    """The ``extra=`` of a log line about an instance (see runtara.logging_setup)."""
    return {"instance_id": instance_id, "tenant": tenant, "operation": operation, "action": action}


def checkpoint(
    request: pb.CheckpointRequest, services: Services, registration: int | None = None
) -> pb.RpcResponse:
    outcome = services.storage.checkpoint(
        require_id(request), request.checkpoint_id, request.state, services.now(), registration
    )
    if not outcome.found:
        metrics.checkpoint_stored(len(request.state))
    return pb.RpcResponse(checkpoint=mapping.checkpoint_response(outcome))


def get_checkpoint(
    request: pb.GetCheckpointRequest, services: Services, registration: int | None = None
) -> pb.RpcResponse:
    state = services.storage.get_checkpoint(
        require_id(request), request.checkpoint_id, services.now(), registration
    )
    reply = pb.GetCheckpointResponse(found=state is not None, state=state or b"")
    return pb.RpcResponse(get_checkpoint=reply)


def retry_attempt(
    request: pb.RetryAttemptEvent, services: Services, registration: int | None = None
) -> None:
    services.storage.record_retry(
        require_id(request),
        request.checkpoint_id,
        request.attempt_number,
        _optional(request, "error_message"),
        services.now(),
        registration,
    )


@attrs.frozen
class SleepStarted:
    """The sleep is committed; answer after ``delay`` seconds by calling :func:`finish_sleep`."""

    instance_id: str
    sleep_until: dt.datetime
    delay: float


def sleep(
    request: pb.SleepRequest, services: Services, registration: int | None = None
) -> SleepStarted:
    """Durable Sleep: ``sleep_until`` (and the checkpoint, if one is given) is committed
    and the instance suspended now; the reply comes ``duration_ms`` later, from a
    timer, after :func:`finish_sleep` woke the instance. If the instance or the
    server dies meanwhile, the instance stays suspended and due for waking."""
    instance_id = require_id(request)
    if request.duration_ms > limits.MAX_SLEEP // dt.timedelta(milliseconds=1):
        raise errors.ValidationError("duration_ms", f"at most {limits.MAX_SLEEP.days} days")
    until = services.storage.begin_sleep(
        instance_id,
        dt.timedelta(milliseconds=request.duration_ms),
        request.checkpoint_id,
        request.state,
        services.now(),
        registration,
    )
    return SleepStarted(instance_id, until, request.duration_ms / 1000)


def finish_sleep(started: SleepStarted, services: Services) -> pb.RpcResponse:
    services.storage.finish_sleep(started.instance_id, started.sleep_until, services.now())
    return pb.RpcResponse(sleep=pb.SleepResponse())


def _event(event: pb.InstanceEvent, services: Services, registration: int | None) -> None:
    kind = mapping.event_type(event.event_type)
    services.storage.record_event(
        require_id(event),
        kind,
        event.payload,
        services.now(),
        checkpoint_id=_optional(event, "checkpoint_id"),
        subtype=_optional(event, "subtype"),
        registration=registration,
    )
    if kind in _LIFECYCLE_EVENTS:
        error = (
            event.payload.decode("utf-8", "replace")[:200]
            if kind is records.EventType.FAILED
            else ""
        )
        logger.info(
            "instance %r %s%s",
            event.instance_id,
            kind.value,
            f": {error}" if error else "",
            extra=_context(event.instance_id, "instance_event", kind.value),
        )


def instance_event(
    request: pb.InstanceEvent, services: Services, registration: int | None = None
) -> pb.RpcResponse:
    _event(request, services, registration)
    return pb.RpcResponse(instance_event=pb.InstanceEventResponse(success=True))


def instance_event_batch(
    request: pb.InstanceEventBatch, services: Services, registration: int | None = None
) -> None:
    """Each event is its own operation; a refused one is logged and skipped."""
    for index, event in enumerate(request.events):
        try:
            _event(event, services, registration)
        except (errors.RequestError, errors.StorageError) as error:
            logger.warning(
                "event %d of a batch for instance %r skipped: %s",
                index,
                event.instance_id,
                error,
                extra=_context(event.instance_id or None, "instance_event_batch", "refused"),
            )


def get_instance_status(
    request: pb.GetInstanceStatusRequest, services: Services, registration: int | None = None
) -> pb.RpcResponse:
    """An unknown instance is not an error: STATUS_UNKNOWN, "Instance not found"."""
    instance_id = require_id(request)
    instance = services.storage.instance_status(instance_id, services.now())
    return pb.RpcResponse(get_instance_status=mapping.status_response(instance_id, instance))


def poll_signals(
    request: pb.PollSignalsRequest, services: Services, registration: int | None = None
) -> pb.RpcResponse:
    signals = services.storage.poll_signals(
        require_id(request), _optional(request, "checkpoint_id"), services.now(), registration
    )
    return pb.RpcResponse(poll_signals=mapping.poll_signals_response(signals))


def signal_ack(request: pb.SignalAck, services: Services, registration: int | None = None) -> None:
    signal_type = mapping.signal_or_cancel(request.signal_type)
    services.storage.acknowledge_signal(
        require_id(request), signal_type, request.acknowledged, services.now(), registration
    )
    if request.acknowledged and signal_type is records.SignalType.CANCEL:
        logger.info(
            "instance %r cancelled: it acknowledged the cancel",
            request.instance_id,
            extra=_context(request.instance_id, "signal_ack", "cancelled"),
        )
