"""Durable Sleep (README: Protocol behaviour).

The reply still comes ``duration_ms`` after the request, as clients expect, but
the wait is a timer on the event loop, not a blocked worker. Before the wait,
``sleep_until`` (and the checkpoint, when one is given) is committed and the
instance is ``suspended``; when the timer fires the instance is ``running``
again, ``sleep_until`` is cleared, and only then is the reply written. If the
instance or the server dies meanwhile, the instance stays suspended and due for
waking.
"""

from __future__ import annotations

import datetime as dt

import attrs

from runtara import errors, records
from runtara.handlers import mapping
from runtara.handlers.checkpoints import require_instance, require_running
from runtara.handlers.services import Services
from runtara.protocol import instance_pb2 as pb
from runtara.storage import base

MAX_SLEEP = dt.timedelta(days=3650)


@attrs.frozen
class SleepStarted:
    """The sleep is committed; answer after ``delay`` seconds by calling :func:`finish_sleep`."""

    instance_id: str
    sleep_until: dt.datetime
    delay: float


def begin_sleep(request: pb.SleepRequest, services: Services) -> SleepStarted:
    instance_id = mapping.require_id(request)
    if request.duration_ms > MAX_SLEEP // dt.timedelta(milliseconds=1):
        raise errors.ValidationError("duration_ms", f"at most {MAX_SLEEP.days} days")
    duration = dt.timedelta(milliseconds=request.duration_ms)
    checkpoint_id = request.checkpoint_id

    def work(tx: base.Transaction) -> dt.datetime:
        now = services.now()
        require_running(require_instance(tx, instance_id))
        until = now + duration
        # Whole milliseconds, so that any driver gives back exactly this value.
        until = until.replace(microsecond=until.microsecond // 1000 * 1000)
        update = records.InstanceUpdate(
            status=records.InstanceStatus.SUSPENDED, sleep_until=until, last_activity_at=now
        )
        if checkpoint_id and tx.insert_checkpoint(instance_id, checkpoint_id, request.state, now):
            update = attrs.evolve(update, checkpoint_id=checkpoint_id)
        tx.update_instance(instance_id, update)
        return until

    until = services.storage.run(work)
    return SleepStarted(instance_id, until, request.duration_ms / 1000)


def finish_sleep(started: SleepStarted, services: Services) -> pb.RpcResponse:
    """Wake the instance, unless something else changed it during the sleep."""

    def work(tx: base.Transaction) -> None:
        now = services.now()
        instance = tx.get_instance(started.instance_id)
        if (
            instance is not None
            and instance.status is records.InstanceStatus.SUSPENDED
            and instance.sleep_until == started.sleep_until
        ):
            tx.update_instance(
                started.instance_id,
                records.InstanceUpdate(
                    status=records.InstanceStatus.RUNNING, sleep_until=None, last_activity_at=now
                ),
            )

    services.storage.run(work)
    return pb.RpcResponse(sleep=pb.SleepResponse())
