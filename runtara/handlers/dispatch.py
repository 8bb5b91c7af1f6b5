"""The dispatch tables of both protocols, and running one request.

:func:`execute` runs one decoded request on the calling (worker) thread and
says what the server must answer: a reply message, nothing (an empty FIN), or
a durable sleep to finish later. Refusals and storage failures become an
``RpcResponse.error`` carrying the operation's upstream error code; the three
no-reply operations only log them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from google.protobuf.message import Message

from runtara import errors
from runtara.credentials import Role
from runtara.handlers import instance, management
from runtara.handlers.services import Services
from runtara.protocol import codes
from runtara.protocol import instance_pb2 as pb
from runtara.protocol import management_pb2 as mpb

logger = logging.getLogger(__name__)


@attrs.frozen
class Operation:
    name: str
    """The ``RpcRequest`` oneof field."""
    handler: Callable[[Any, Services], Any]
    error_code: str | None
    """The ``RpcError.code`` of a failure, or None for operations that never reply."""
    response_type: type[Message] = pb.RpcResponse
    """The ``RpcResponse`` message of the protocol the operation belongs to."""
    role: Role = Role.READ
    """The credential a management request needs (the instance protocol has none)."""

    @property
    def replies(self) -> bool:
        return self.error_code is not None


def _table(response_type: type[Message], *operations: tuple) -> Mapping[str, Operation]:
    return {
        name: Operation(name, handler, code, response_type, *role)
        for name, handler, code, *role in operations
    }


INSTANCE_OPERATIONS = _table(
    pb.RpcResponse,
    ("register_instance", instance.register_instance, "REGISTER_INSTANCE_ERROR"),
    ("sleep", instance.sleep, "SLEEP_ERROR"),
    ("instance_event", instance.instance_event, "INSTANCE_EVENT_ERROR"),
    ("instance_event_batch", instance.instance_event_batch, None),
    ("get_instance_status", instance.get_instance_status, "GET_INSTANCE_STATUS_ERROR"),
    ("checkpoint", instance.checkpoint, "CHECKPOINT_ERROR"),
    ("get_checkpoint", instance.get_checkpoint, "GET_CHECKPOINT_ERROR"),
    ("poll_signals", instance.poll_signals, "POLL_SIGNALS_ERROR"),
    ("signal_ack", instance.signal_ack, None),
    ("retry_attempt", instance.retry_attempt, None),
)

MANAGEMENT_OPERATIONS = _table(
    mpb.RpcResponse,
    *(
        (name, handler, f"{name.upper()}_ERROR", role)
        for name, handler, role in (
            *((operator.field, operator, operator.role) for operator in management.OPERATORS),
            *management.SERVER_ONLY,
        )
    ),
)
"""The management protocol's operations; those that change something need the
operate credential, the others the read one (or the operate one)."""

CHILD_OPERATIONS = frozenset({"start_child", "get_child"})
"""The only operations the child credential of the request's ``parent_id`` allows."""


@attrs.frozen
class Reply:
    """Write this message, then FIN."""

    message: Message


@attrs.frozen
class NoReply:
    """Finish the stream without data (the request's effects are committed)."""


Outcome = Reply | NoReply | instance.SleepStarted


def error_reply(code: str, message: str, response_type: type[Message] = pb.RpcResponse) -> Reply:
    """A reply carrying ``RpcResponse.error`` (every protocol has it as field 15)."""
    response = response_type()
    response.error.code = code
    response.error.message = message
    return Reply(response)


def execute(
    operation: Operation, request: Any, services: Services, registration: int | None = None
) -> Outcome:
    """Run one request on the calling (worker) thread; ``registration`` is the one the
    requesting process holds, when known (instance operations only)."""
    try:
        if registration is None:
            result = operation.handler(request, services)
        else:
            result = operation.handler(request, services, registration)
    except errors.StorageError as error:
        services.storage_health.failed(error)
        return failed(operation, getattr(request, "instance_id", ""), error)
    except (errors.RequestError, errors.OperationRefused) as error:
        return failed(operation, getattr(request, "instance_id", ""), error)
    except Exception as error:
        logger.exception("bug while handling %s", operation.name)
        return failed(operation, getattr(request, "instance_id", ""), error, type(error).__name__)
    services.storage_health.succeeded()
    if isinstance(result, instance.SleepStarted):
        return result
    return NoReply() if result is None else Reply(result)


def finish_sleep(started: instance.SleepStarted, services: Services) -> Outcome:
    """The second half of a Sleep, run when its timer fires."""
    try:
        return Reply(instance.finish_sleep(started, services))
    except errors.StorageError as error:
        services.storage_health.failed(error)
        return failed(INSTANCE_OPERATIONS["sleep"], started.instance_id, error)


def failed(
    operation: Operation, instance_id: str, error: Exception, bug: str | None = None
) -> Outcome:
    """The answer to a failed request: its error reply, or nothing for a no-reply one."""
    if operation.error_code is None:
        logger.warning("%s for instance %r failed: %s", operation.name, instance_id, error)
        return NoReply()
    if bug is not None:
        return error_reply(operation.error_code, f"Internal error: {bug}", operation.response_type)
    logger.info("%s for instance %r refused: %s", operation.name, instance_id, error)
    code = codes.SUPERSEDED if isinstance(error, errors.Superseded) else operation.error_code
    return error_reply(code, str(error), operation.response_type)
