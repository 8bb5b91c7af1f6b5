"""What running a request means: the handlers' work as the core hands it to workers.

The sans-I/O core decides which request runs and when; it is handed a
:class:`Handling`, which makes each admitted request's :class:`core.Work`
(dispatch to the handler, the reply as a frame) and the frames of refusals.
:func:`serve_together` runs the jobs of one loop pass on one worker inside one
storage batch (:meth:`runtara.storage.base.StorageDriver.run_batch`), so that
they cost one hand-off to the pool, one back, and one commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message

from runtara import errors, metrics
from runtara.handlers import dispatch
from runtara.handlers.instance import SleepStarted
from runtara.handlers.services import Services
from runtara.protocol import codes, framing
from runtara.server import core

logger = logging.getLogger(__name__)


class Handling:
    """The handlers of one server, for its core (see :class:`core.Handling`)."""

    child_operations = dispatch.CHILD_OPERATIONS

    def __init__(self, services: Services) -> None:
        self.services = services

    def request(
        self,
        operation: dispatch.Operation,
        body: Message,
        registration: int | None,
        protocol: str,
    ) -> core.Work:
        services = self.services
        instance_id = getattr(body, "instance_id", "")

        def run():
            started = metrics.clock_seconds()  # the worker's time, not the core's
            outcome = dispatch.execute(operation, body, services, registration)
            metrics.request_served(protocol, operation.name, _served(outcome), started)
            frame = _frame(outcome, operation, instance_id)
            if (
                operation.name == "register_instance"
                and isinstance(outcome, dispatch.Reply)
                and outcome.message.register_instance.HasField("registration")
            ):
                return core.Registered(
                    frame, instance_id, outcome.message.register_instance.registration
                )
            return frame

        def failed(error: Exception):
            return _frame(dispatch.failed(operation, instance_id, error), operation, instance_id)

        return core.Work(run, failed)

    def finish_sleep(self, sleeping: core.Sleeping) -> core.Work:
        services = self.services
        operation = dispatch.INSTANCE_OPERATIONS["sleep"]
        instance_id = sleeping.instance_id

        def run():
            outcome = dispatch.finish_sleep(sleeping.started, services)
            return _frame(outcome, operation, instance_id)

        def failed(error: Exception):
            return _frame(dispatch.failed(operation, instance_id, error), operation, instance_id)

        return core.Work(run, failed)

    def error_frame(self, code: str, message: str, response_type: type[Message]) -> bytes:
        return _encode(dispatch.error_reply(code, message, response_type).message)


def serve_together(services: Services, jobs: Sequence[core.Job]) -> list[Any]:
    """Run ``jobs`` one after the other on this (worker) thread, in one storage batch;
    their results, in order, to hand to :meth:`core.ServerCore.work_done`.

    Each job keeps its own outcome: a request that is refused or fails undoes
    only its own writes (the driver's ``run`` contract holds inside a batch).
    The results exist only once the batch is committed; if the storage could not
    commit it, none of its writes are kept and every job gets the storage error
    reply it would have had alone.
    """
    results: list[Any] = []

    def serve() -> None:
        for job in jobs:
            results.append(serve_alone(job))

    storage = services.storage
    if storage is None:  # a server with no storage (the echo baseline)
        serve()
        return results
    try:
        storage.run_batch(serve)
    except errors.StorageError as error:
        services.storage_health.failed(error)
        logger.warning("a batch of %d requests was not committed: %s", len(jobs), error)
        return [job.failed(error) for job in jobs]
    except BaseException as error:
        # An interruption or bug in the storage's own steps: say "not done" on each
        # stream rather than leave it open (the core resets a stream given an exception).
        logger.exception("a batch of %d requests failed outside their handlers", len(jobs))
        return [error] * len(jobs)
    return results


def serve_alone(job: core.Job) -> Any:
    """Run one job; whatever escapes its work (a BaseException too) is its result:
    the core then answers the stream and gives the worker slot back."""
    try:
        return job.work()
    except BaseException as error:
        logger.exception("a request failed outside its handler")
        return error


def _encode(message: Message) -> bytes:
    return framing.encode_frame(message.SerializeToString())


def _frame(outcome: dispatch.Outcome, operation: dispatch.Operation, instance_id: str):
    """An outcome as what the QUIC layer writes: a frame, None, or the sleep to time."""
    if isinstance(outcome, SleepStarted):
        return core.Sleeping(outcome.delay, outcome.instance_id, outcome)
    if isinstance(outcome, dispatch.NoReply):
        return None
    try:
        return _encode(outcome.message)
    except framing.FrameTooLarge as error:
        # A stored state plus signal payloads can outgrow one frame.
        logger.info(
            "%s for instance %r refused: reply too large: %s",
            operation.name,
            instance_id,
            error,
            extra={"instance_id": instance_id, "operation": operation.name, "action": "refused"},
        )
        message = f"the reply would not fit in a frame: {error}"
        reply = dispatch.error_reply(operation.error_code, message, operation.response_type)
        return _encode(reply.message)


def _served(outcome: dispatch.Outcome) -> str:
    """The ``outcome`` label of a request a worker ran (see runtara.metrics)."""
    if isinstance(outcome, dispatch.Reply):
        message = outcome.message
        kind = message.WhichOneof("response")
        if kind == "error":
            return "superseded" if message.error.code == codes.SUPERSEDED else "error"
        if kind == "register_instance" and not message.register_instance.success:
            return "error"
    return "ok"
