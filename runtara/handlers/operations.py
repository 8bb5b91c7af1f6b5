"""The dispatch table of the instance protocol.

:func:`execute` runs one decoded request and returns what the server must do:
write a reply frame, finish the stream without data, or start a durable sleep.
Refusals and storage failures become an ``RpcResponse.error`` carrying the
operation's upstream error code; the three no-reply operations only log them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs
from google.protobuf.message import Message

from runtara import errors
from runtara.handlers import checkpoints, events, registration, signals, sleep, status
from runtara.handlers.services import Services
from runtara.protocol import framing
from runtara.protocol import instance_pb2 as pb

logger = logging.getLogger(__name__)

EMPTY_REQUEST = "EMPTY_REQUEST"


@attrs.frozen
class Operation:
    name: str
    """The ``RpcRequest`` oneof field."""
    handler: Callable[[Any, Services], Any]
    error_code: str | None
    """The ``RpcError.code`` of a failure, or None for operations that never reply."""
    response_type: type[Message] = pb.RpcResponse
    """The ``RpcResponse`` message of the protocol the operation belongs to."""

    @property
    def replies(self) -> bool:
        return self.error_code is not None


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("register_instance", registration.register_instance, "REGISTER_INSTANCE_ERROR"),
        Operation("sleep", sleep.begin_sleep, "SLEEP_ERROR"),
        Operation("instance_event", events.instance_event, "INSTANCE_EVENT_ERROR"),
        Operation("instance_event_batch", events.instance_event_batch, None),
        Operation("get_instance_status", status.get_instance_status, "GET_INSTANCE_STATUS_ERROR"),
        Operation("checkpoint", checkpoints.checkpoint, "CHECKPOINT_ERROR"),
        Operation("get_checkpoint", checkpoints.get_checkpoint, "GET_CHECKPOINT_ERROR"),
        Operation("poll_signals", signals.poll_signals, "POLL_SIGNALS_ERROR"),
        Operation("signal_ack", signals.signal_ack, None),
        Operation("retry_attempt", checkpoints.retry_attempt, None),
    )
}


@attrs.frozen
class Reply:
    """Write this frame, then FIN."""

    frame: bytes


@attrs.frozen
class NoReply:
    """Finish the stream without data (the request's effects are committed)."""


Outcome = Reply | NoReply | sleep.SleepStarted


def error_frame(code: str, message: str, response_type: type[Message] = pb.RpcResponse) -> bytes:
    """A reply frame carrying ``RpcResponse.error`` (every protocol has it as field 15)."""
    response = response_type()
    response.error.code = code
    response.error.message = message
    return encode(response)


def encode(response: Message) -> bytes:
    return framing.encode_frame(response.SerializeToString())


def execute(operation: Operation, request: Any, services: Services) -> Outcome:
    """Run one request on the calling (worker) thread."""
    try:
        result = operation.handler(request, services)
    except (errors.RequestError, errors.OperationRefused, errors.StorageError) as error:
        return _failed(operation, request, error)
    except Exception as error:
        logger.exception("bug while handling %s", operation.name)
        return _failed(operation, request, error, f"Internal error: {type(error).__name__}")
    if isinstance(result, sleep.SleepStarted):
        return result
    if result is None:
        return NoReply()
    try:
        return Reply(encode(result))
    except framing.FrameTooLarge as error:
        # A stored state plus signal payloads can outgrow one frame.
        return _failed(operation, request, error, f"the reply would not fit in a frame: {error}")


def finish_sleep(started: sleep.SleepStarted, services: Services) -> Outcome:
    """The second half of a Sleep, run when its timer fires."""
    operation = OPERATIONS["sleep"]
    try:
        return Reply(encode(sleep.finish_sleep(started, services)))
    except errors.StorageError as error:
        return _failed(operation, started, error)


def _failed(
    operation: Operation, request: Any, error: Exception, message: str | None = None
) -> Outcome:
    instance_id = getattr(request, "instance_id", "")
    if operation.error_code is None:
        logger.warning("%s for instance %r failed: %s", operation.name, instance_id, error)
        return NoReply()
    logger.info("%s for instance %r refused: %s", operation.name, instance_id, error)
    return Reply(error_frame(operation.error_code, message or str(error), operation.response_type))
